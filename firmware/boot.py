# oxilink boot.py: keep it minimal; main.py decides between the app and safe mode.
import gc

gc.collect()
