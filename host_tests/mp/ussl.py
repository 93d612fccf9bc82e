# Test-only shim: umqtt.simple 1.3.4 imports `ussl`, which MicroPython 1.2x no longer has.
from ssl import *  # noqa: F401,F403
