# One tiny level-gated logger. Hot paths keep debug output behind `_DEBUG = const(False)` so it compiles out.
import time

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}


class Log:
    def __init__(self, name, level=INFO, write=print):
        self.name = name
        self.level = level
        self._write = write
        self.errors = 0
        self.warnings = 0

    def log(self, level, msg):
        if level >= ERROR:
            self.errors += 1
        elif level >= WARNING:
            self.warnings += 1
        if level >= self.level:
            self._write("%d %s %s: %s" % (time.ticks_ms(), _NAMES.get(level, level), self.name, msg))

    def debug(self, msg):
        self.log(DEBUG, msg)

    def info(self, msg):
        self.log(INFO, msg)

    def warning(self, msg):
        self.log(WARNING, msg)

    def error(self, msg):
        self.log(ERROR, msg)
