# oxilink boot.py: keep it minimal; main.py decides between the app and safe mode. It also runs after a soft
# reset into the raw REPL (mpremote), where main.py does not: a watchdog the app started must be kept fed.
import gc

import machine

if machine.reset_cause() == machine.SOFT_RESET:
    import wdtkeeper

    wdtkeeper.start()
gc.collect()
