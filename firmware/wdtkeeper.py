# Keeps a running watchdog fed while the board is not running the app.
#
# On the ESP32, machine.WDT cannot be stopped, and a soft reset (Ctrl-D, or mpremote, which soft-resets into
# the raw REPL before every session) leaves it running: the app that fed it is gone, so the board would reset
# in the middle of a REPL session, a file copy or a deploy. boot.py calls start() after a soft reset; main.py
# calls stop() before the app takes the watchdog over. Feeding runs from a machine.Timer callback, which the
# REPL's input wait keeps servicing. A hard reset (machine.reset, power) clears the watchdog and the timer.
import machine

TIMEOUT_MS = 30000  # the app's (main.py)
FEED_EVERY_MS = 2000
_timer = None


def start():
    global _timer
    wdt = machine.WDT(timeout=TIMEOUT_MS)  # the running one (same task-WDT user), or a new one we then feed
    _timer = machine.Timer(0)
    _timer.init(period=FEED_EVERY_MS, callback=lambda t: wdt.feed())


def stop():
    global _timer
    if _timer is not None:
        _timer.deinit()
        _timer = None
