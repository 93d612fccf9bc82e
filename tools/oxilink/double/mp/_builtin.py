# The port's own built-in module `name`, even when a .py of the same name extends it (machine, time, socket):
# with sys.path empty, MicroPython's import skips the filesystem and sys.modules (as ports/esp32/modules/machine.py
# relies on).
import sys


def load(name):
    path = sys.path
    sys.path = ()
    try:
        return __import__(name)
    finally:
        sys.path = path
