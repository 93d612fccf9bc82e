# ssl on the board double: the port's own ssl (frozen, over the tls module), plus an ESP32's CPU time for a
# handshake's public-key steps when the launcher asks for it (Board(tls_step_ms=...)): each such step (verifying
# the broker's Certificate and ServerKeyExchange, computing ECDH and the CertificateVerify signature) blocks the
# board for tls_step_ms as its message passes between mbedTLS and the socket (firmware/sim/tlscost.py), as the
# computation blocks an ESP32's CPU inside one mbedTLS call: nothing else runs, the sensor's FIFO fills.
# Host-side only.
import sys

import _builtin
from _state import run

_t = _builtin.load("time")


def _frozen_ssl():
    # the port's ssl.py, frozen, found under ".frozen" while this module stands in for it in sys.modules
    me = sys.modules.pop("ssl")
    path = sys.path
    sys.path = [".frozen"]
    try:
        import ssl as port_ssl

        return port_ssl
    finally:
        sys.path = path
        sys.modules["ssl"] = me


_s = _frozen_ssl()
_g = globals()
for _n in dir(_s):
    if not _n.startswith("_") and _n not in _g:
        _g[_n] = getattr(_s, _n)
del _g, _n

_STEP_MS = run.get("tls_step_ms") or 0
if _STEP_MS:
    from sim.tlscost import Stretch  # loaded while the firmware folder is on the path (_board.py)


def _cpu(ms):
    _t.sleep_ms(ms)  # board time; the whole interpreter waits, as on a CPU busy with mbedTLS


class SSLContext(_s.SSLContext):
    """The port's SSLContext; wrap_socket() charges the handshake's public-key steps (see above)."""

    def wrap_socket(self, sock, **kw):
        if _STEP_MS:
            sock = Stretch(sock, _cpu, _STEP_MS, [])
        return super().wrap_socket(sock, **kw)
