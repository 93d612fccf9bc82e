# Frozen modules of the esp32like variant, as an ESP32 firmware freezes them: asyncio, and micropython-lib's
# ssl (the Python wrapper over the built-in tls module).
include("$(MPY_DIR)/extmod/asyncio")
require("ssl")
