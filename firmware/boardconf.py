# Board file schema and validation: the same code runs at boot on the device and in `oxilink board check`.
#
# A board file is JSON. Every field has a type, a default and an allowed set or range (see SCHEMA and
# docs/boards.md). Unknown keys, wrong types and out-of-range values are errors that name the file, the
# field and what is allowed. All problems are collected and reported together.
#
# load() also gives the file its config id (cfg["config_id"]): the first 30 bits of the sha256 of the file's
# bytes, big-endian. Every batch carries it as `cfg` (docs/format.md), so a reading names the exact board file
# it was taken under; 30 bits keep it a small int on the ESP32, where encoding it must not allocate.
import hashlib
import json

REQUIRED = object()

PLATFORMS = ("esp32", "esp32s3", "esp32c3", "unix")
SAMPLE_RATES = (50, 100, 200, 400, 800, 1000, 1600, 3200)
AVERAGING = (1, 2, 4, 8, 16, 32)
PULSE_WIDTHS = (69, 118, 215, 411)
ADC_RANGES = (2048, 4096, 8192, 16384)
# Highest sample rate per pulse width (MAX30102 datasheet, SpO2 and HR mode tables).
MAX_RATE_SPO2 = {69: 1600, 118: 1000, 215: 800, 411: 400}
MAX_RATE_HR = {69: 3200, 118: 1600, 215: 1600, 411: 1000}
# Output rate after on-chip averaging that the vitals pipeline supports.
OUTPUT_RATE_MIN = 25
OUTPUT_RATE_MAX = 400

# GPIO facts per platform: (highest GPIO, pins that do not exist or belong to flash/PSRAM, input-only pins).
PINS = {
    "esp32": (39, (6, 7, 8, 9, 10, 11, 20, 24, 28, 29, 30, 31), (34, 35, 36, 37, 38, 39)),
    "esp32s3": (48, (22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32), ()),
    "esp32c3": (21, (12, 13, 14, 15, 16, 17), ()),
}
I2C_BUSES = {"esp32": 2, "esp32s3": 2, "esp32c3": 1, "unix": 1}

# Field spec: (kind, default, allowed). allowed is a tuple of choices, a list [lo, hi] for a range, or None.
# kinds: int, num (int or float), bool, str, pin (GPIO number or null), curve (list of 3 numbers).
SCHEMA = {
    "board": ("str", REQUIRED, None),
    "description": ("str", "", None),
    "manufacturer": ("str", "", None),  # who makes the device as a whole (on its FHIR Device)
    "model": ("str", "", None),  # its model name or number (on its FHIR Device)
    "platform": ("str", REQUIRED, PLATFORMS),
    "i2c": {
        "bus": ("int", 0, [0, 1]),
        "sda": ("pin", None, None),
        "scl": ("pin", None, None),
        "freq": ("int", 400000, [10000, 400000]),
    },
    "sensor": {
        "model": ("str", "max30102", ("max30102", "max30101", "max30105")),
        "address": ("int", 0x57, [0x08, 0x77]),
        "int_pin": ("pin", None, None),
        "mode": ("str", "spo2", ("hr", "spo2", "multi")),
        "sample_rate": ("int", 100, SAMPLE_RATES),
        "averaging": ("int", 1, AVERAGING),
        "pulse_width_us": ("int", 411, PULSE_WIDTHS),
        "adc_range_na": ("int", 4096, ADC_RANGES),
        "led_red_ma": ("num", 7.0, [0, 51]),
        "led_ir_ma": ("num", 7.0, [0, 51]),
        "led_green_ma": ("num", 0, [0, 51]),
        "swap_red_ir": ("bool", False, None),
        "fifo_almost_full": ("int", 15, [0, 15]),
    },
    "vitals": {
        # SpO2 (%) = c0 + c1*R + c2*R*R, R = (AC_red/DC_red)/(AC_ir/DC_ir). Fit with `oxilink calibrate`.
        "spo2_curve": ("curve", [110.0, -25.0, 0.0], None),
        "finger_min_counts": ("int", 10000, [0, 262143]),
        "min_pi_pct": ("num", 0.1, [0, 20]),
    },
    "report": {
        "batch_seconds": ("int", 30, [5, 600]),
        "status_interval_s": ("int", 300, [30, 3600]),
    },
    "mqtt": {
        "host": ("str", "localhost", None),
        "port": ("int", 8883, [1, 65535]),
        "tls": ("bool", True, None),
        "keepalive_s": ("int", 60, [10, 1200]),
    },
    "queue": {
        "capacity_bytes": ("int", 262144, [16384, 4194304]),
        "path": ("str", "/q", None),
    },
    "time": {
        # HOST or HOST:PORT; secrets.json's "ntp" (oxilink provision --ntp) overrides it per site.
        "ntp_server": ("str", "pool.ntp.org", None),
        "resync_h": ("int", 6, [1, 144]),  # ticks_add() spans at most 2**29 ms (149 h)
    },
}


class BoardError(ValueError):
    pass


def _allowed_text(allowed):
    if isinstance(allowed, list):
        return "%s..%s" % (allowed[0], allowed[1])
    return ", ".join(str(a) for a in allowed)


def _check_value(name, value, spec, errors):
    kind, _default, allowed = spec
    t = type(value)
    if kind == "bool":
        ok = t is bool
    elif kind == "int":
        ok = t is int
    elif kind == "num":
        ok = t is int or t is float
    elif kind == "str":
        ok = t is str
    elif kind == "pin":
        ok = value is None or t is int
    elif kind == "curve":
        ok = t is list and len(value) == 3 and all(type(c) in (int, float) for c in value)
    else:
        ok = False
    if not ok:
        want = {"curve": "a list of 3 numbers", "pin": "a GPIO number or null", "num": "a number"}.get(kind, kind)
        errors.append("%s: expected %s, got %s" % (name, want, json.dumps(value)))
        return False
    if allowed is None or (kind == "pin" and value is None):
        return True
    if isinstance(allowed, list):
        if not allowed[0] <= value <= allowed[1]:
            errors.append("%s: %s is out of range; allowed: %s" % (name, json.dumps(value), _allowed_text(allowed)))
            return False
    elif value not in allowed:
        errors.append("%s: %s is not allowed; allowed: %s" % (name, json.dumps(value), _allowed_text(allowed)))
        return False
    return True


def _apply(schema, raw, prefix, errors):
    out = {}
    if type(raw) is not dict:
        errors.append("%s: expected an object, got %s" % (prefix or "board file", json.dumps(raw)))
        raw = {}
    for key in raw:
        if key not in schema:
            errors.append(
                "%s: unknown key; allowed keys%s: %s"
                % (prefix + key, " in " + prefix[:-1] if prefix else "", ", ".join(sorted(schema)))
            )
    for key in schema:
        spec = schema[key]
        name = prefix + key
        if type(spec) is dict:
            out[key] = _apply(spec, raw.get(key, {}), name + ".", errors)
            continue
        if key not in raw:
            if spec[1] is REQUIRED:
                errors.append("%s: required field is missing" % name)
                continue
            default = spec[1]
            out[key] = list(default) if type(default) is list else default
        elif _check_value(name, raw[key], spec, errors):
            out[key] = raw[key]
        else:
            out[key] = None
    return out


def _check_pin(cfg, name, value, output, errors):
    platform = cfg["platform"]
    if platform == "unix":
        if value is not None:
            errors.append("%s: the unix platform has no GPIO; use null" % name)
        return
    if value is None:
        if output:
            errors.append("%s: required on platform %s" % (name, platform))
        return
    top, reserved, input_only = PINS[platform]
    if not 0 <= value <= top or value in reserved:
        errors.append("%s: GPIO%d is not usable on %s (GPIO 0..%d, not %s)"
                      % (name, value, platform, top, ", ".join(str(p) for p in reserved)))
    elif output and value in input_only:
        errors.append("%s: GPIO%d is input-only on %s; I2C needs a bidirectional pin" % (name, value, platform))


def _cross_checks(cfg, errors):
    if cfg.get("platform") is None:
        return
    i2c, s = cfg["i2c"], cfg["sensor"]
    if i2c["bus"] is not None and i2c["bus"] >= I2C_BUSES[cfg["platform"]]:
        errors.append("i2c.bus: %s has %d I2C bus(es); allowed: 0..%d"
                      % (cfg["platform"], I2C_BUSES[cfg["platform"]], I2C_BUSES[cfg["platform"]] - 1))
    _check_pin(cfg, "i2c.sda", i2c["sda"], True, errors)
    _check_pin(cfg, "i2c.scl", i2c["scl"], True, errors)
    _check_pin(cfg, "sensor.int_pin", s["int_pin"], False, errors)
    if i2c["sda"] is not None and i2c["sda"] == i2c["scl"]:
        errors.append("i2c.scl: same GPIO as i2c.sda")
    sr, avg, pw, mode = s["sample_rate"], s["averaging"], s["pulse_width_us"], s["mode"]
    if None in (sr, avg, pw, mode):
        return
    limit = (MAX_RATE_HR if mode == "hr" else MAX_RATE_SPO2)[pw]
    if sr > limit:
        errors.append("sensor.sample_rate: %d Hz is not supported with pulse_width_us %d in %s mode; allowed: %s"
                      % (sr, pw, mode, ", ".join(str(r) for r in SAMPLE_RATES if r <= limit)))
    elif sr % avg or not OUTPUT_RATE_MIN <= sr // avg <= OUTPUT_RATE_MAX:
        errors.append("sensor.averaging: sample_rate %d / averaging %d must be a whole output rate of %d..%d Hz"
                      % (sr, avg, OUTPUT_RATE_MIN, OUTPUT_RATE_MAX))
    if s["led_green_ma"] and (s["model"] == "max30102" or mode != "multi"):
        errors.append("sensor.led_green_ma: a green LED needs model max30101/max30105 in multi mode")


def validate(raw, source="board file"):
    """Return the complete configuration (defaults filled in) or raise BoardError listing every problem."""
    errors = []
    cfg = _apply(SCHEMA, raw, "", errors)
    if not errors:
        _cross_checks(cfg, errors)
    if errors:
        raise BoardError("\n".join("%s: %s" % (source, e) for e in errors))
    return cfg


def output_rate(cfg):
    s = cfg["sensor"]
    return s["sample_rate"] // s["averaging"]


def config_id(data):
    """The config id of a board file's bytes (see the top of this file)."""
    d = hashlib.sha256(data).digest()
    return (d[0] & 0x3F) << 24 | d[1] << 16 | d[2] << 8 | d[3]


def load(path):
    """Read and validate a board file; the board name must match the file name."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BoardError("%s: cannot read board file (%s)" % (path, e))
    try:
        raw = json.loads(data.decode())
    except ValueError as e:  # UnicodeError is one too
        raise BoardError("%s: not valid JSON (%s)" % (path, e))
    cfg = validate(raw, path)
    cfg["config_id"] = config_id(data)
    stem = path.rsplit("/", 1)[-1]
    if stem.endswith(".json"):
        stem = stem[:-5]
    if stem not in ("board", cfg["board"]):
        raise BoardError("%s: board: %s does not match the file name %s" % (path, json.dumps(cfg["board"]), stem))
    return cfg
