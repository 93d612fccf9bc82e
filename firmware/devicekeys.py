# The device's identity and sealing keys, from the provisioned secrets.json (docs/format.md, "Key material"):
#   {"device_id": "dev-3f9a2c", "kid": "<hex, 1..16 bytes>", "key": "<hex, 16 bytes>",
#    "base_iv": "<hex, 13 bytes>", ...}
# Other keys (wifi, certificates) belong to other modules and are ignored here. Every problem raises
# SecretsError naming the file and the field.

import json
from binascii import unhexlify

KEY_LEN = 16
BASE_IV_LEN = 13
KID_MAX_LEN = 16
DEVICE_ID_MAX_LEN = 32
_DEVICE_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
_ENOENT = 2


class SecretsError(ValueError):
    """Bad or missing secrets; .field is the offending field, or None for the file itself."""

    def __init__(self, msg, field=None):
        super().__init__(msg)
        self.field = field


class DeviceKeys:
    def __init__(self, device_id, kid, key, base_iv):
        self.device_id = device_id
        self.kid = kid
        self.key = key
        self.base_iv = base_iv

    def topic(self, kind):
        """The MQTT topic oxilink/<device_id>/<kind> for kind "vitals" or "status", as bytes (the AAD)."""
        return ("oxilink/%s/%s" % (self.device_id, kind)).encode()


def _hex_field(source, d, name, min_len, max_len):
    v = d[name]
    if not isinstance(v, str):
        raise SecretsError("%s: field '%s' must be a hex string" % (source, name), name)
    if len(v) % 2:
        raise SecretsError("%s: field '%s' is not hex (odd number of digits)" % (source, name), name)
    try:
        raw = unhexlify(v)
    except ValueError:
        raise SecretsError("%s: field '%s' is not hex" % (source, name), name)
    if not min_len <= len(raw) <= max_len:
        if min_len == max_len:
            want = "%d bytes (%d hex digits)" % (min_len, 2 * min_len)
        else:
            want = "%d..%d bytes (%d..%d hex digits)" % (min_len, max_len, 2 * min_len, 2 * max_len)
        raise SecretsError("%s: field '%s' must be %s, got %d bytes" % (source, name, want, len(raw)), name)
    return raw


def from_dict(d, source="secrets.json"):
    if not isinstance(d, dict):
        raise SecretsError("%s: must hold a JSON object" % source)
    for name in ("device_id", "kid", "key", "base_iv"):
        if name not in d:
            raise SecretsError("%s: missing field '%s'" % (source, name), name)
    device_id = d["device_id"]
    if (not isinstance(device_id, str) or not 1 <= len(device_id) <= DEVICE_ID_MAX_LEN
            or any(c not in _DEVICE_ID_CHARS for c in device_id)):
        raise SecretsError("%s: field 'device_id' must be 1..%d characters of A-Z a-z 0-9 - _ . (a pseudonym, "
                           "never a patient identifier)" % (source, DEVICE_ID_MAX_LEN), "device_id")
    return DeviceKeys(
        device_id,
        _hex_field(source, d, "kid", 1, KID_MAX_LEN),
        _hex_field(source, d, "key", KEY_LEN, KEY_LEN),
        _hex_field(source, d, "base_iv", BASE_IV_LEN, BASE_IV_LEN),
    )


def load(path="secrets.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        if e.errno == _ENOENT:
            raise SecretsError("%s: missing file (the device has not been provisioned)" % path)
        raise
    try:
        d = json.loads(text)
    except ValueError:
        raise SecretsError("%s: not valid JSON" % path)
    return from_dict(d, path)
