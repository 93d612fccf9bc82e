# oxilink esp32like unix variant: 32-bit words like the ESP32 (needs gcc-multilib).
MICROPY_FORCE_32BIT = 1

# Not in the trimmed vendor tree, and not on an ESP32's default build either.
MICROPY_PY_FFI = 0
MICROPY_PY_BTREE = 0

# What the firmware needs: TLS over mbedTLS (as on the ESP32), LittleFS v2.
MICROPY_PY_SSL = 1
MICROPY_SSL_MBEDTLS = 1
MICROPY_VFS_LFS2 = 1

FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py

# Threads with a GIL, as on the ESP32 port.
MICROPY_PY_THREAD_GIL = 1
