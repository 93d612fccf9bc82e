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


def extend(g, name):
    """The built-in `name`, with its public names copied into the module namespace g: a .py that extends a
    built-in module starts with this, then adds or replaces what the ESP32 port has differently."""
    m = load(name)
    for n in dir(m):
        if not n.startswith("_") and n not in g:
            g[n] = getattr(m, n)
    return m
