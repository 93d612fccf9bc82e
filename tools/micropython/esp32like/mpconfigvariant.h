// oxilink "esp32like" variant of the MicroPython unix port: the ESP32 port's number model on the host.
//
// The ESP32 port (ports/esp32/mpconfigport.h, v1.28.0) runs on a 32-bit CPU with MICROPY_OBJ_REPR_A,
// MICROPY_FLOAT_IMPL_FLOAT and MICROPY_LONGINT_IMPL_MPZ at the EXTRA_FEATURES level. With
// MICROPY_FORCE_32BIT (mpconfigvariant.mk) this build shares that model:
//   - small ints are 31-bit (anything beyond +-2**30 is a heap-allocated MPZ),
//   - time.ticks_ms()/ticks_us() wrap at 2**30,
//   - floats are single precision and heap objects,
//   - sys.maxsize is 2**31-1.
// Everything else is the standard unix variant, so the same tests run unchanged on both builds.

#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

#define MICROPY_OBJ_REPR               (MICROPY_OBJ_REPR_A)
#define MICROPY_FLOAT_IMPL             (MICROPY_FLOAT_IMPL_FLOAT)
#define MICROPY_LONGINT_IMPL           (MICROPY_LONGINT_IMPL_MPZ)

// cryptolib as on stock ESP32 firmware: ECB and CBC only (CTR is off there too).
#define MICROPY_PY_CRYPTOLIB           (1)
#define MICROPY_PY_CRYPTOLIB_CTR       (0)

// The variant lives outside the MicroPython tree (VARIANT_DIR), so the common header is found on the
// port's include path rather than by a relative "../".
#include "variants/mpconfigvariant_common.h"
