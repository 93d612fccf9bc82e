# oxilink boot.py: keep it minimal; main.py decides between the app and safe mode. It also runs after a soft
# reset into the raw REPL (mpremote), where main.py does not: a watchdog the app started must be kept fed.
#
# The deployed modules are native .mpy files (mpy-cross -march=xtensawin/rv32imc), .mpy version 6.3: they load
# on MicroPython v1.23 or newer (v1.24 or newer on the ESP32-C3, whose native emitter came with v1.24). On an
# older or emitter-less firmware every import would fail; say so and stop here (an exception in boot.py
# keeps main.py from running, and the REPL stays free).
import gc
import sys


def _check_mpy(mpy):
    if mpy & 0xFF != 6 or (mpy >> 8) & 3 != 3 or not (mpy >> 10) & 0xF:
        msg = ("this MicroPython (.mpy %d.%d, native arch %d) cannot load oxilink's native .mpy files (6.3): flash "
               "MicroPython v1.23 or newer (ESP32-C3: v1.24 or newer) from micropython.org/download "
               "(ESP32_GENERIC, _S3 or _C3), then deploy again" % (mpy & 0xFF, (mpy >> 8) & 3, (mpy >> 10) & 0xF))
        print("oxilink: " + msg)
        raise RuntimeError(msg)


_check_mpy(getattr(sys.implementation, "_mpy", 0))

import machine  # noqa: E402

if machine.reset_cause() == machine.SOFT_RESET:
    import wdtkeeper

    wdtkeeper.start()
gc.collect()
