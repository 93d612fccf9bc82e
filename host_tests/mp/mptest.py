# Helpers for MicroPython-side test scripts (host_tests/mp is on MICROPYPATH during tests).
import json
import micropython


def report(**kw):
    """Print one JSON line for the CPython side of the test to assert on."""
    print(json.dumps(kw))


def check_no_alloc(fn, *args):
    """Run fn(*args) with the heap locked: any allocation raises MemoryError here."""
    # fn(*args) itself allocates on this build, so dispatch on the argument count.
    micropython.heap_lock()
    try:
        if not args:
            return fn()
        if len(args) == 1:
            return fn(args[0])
        return fn(args[0], args[1])
    finally:
        micropython.heap_unlock()
