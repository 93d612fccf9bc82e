# socket on the board double: the unix port's real sockets, but every name goes through the board's Wi-Fi.
# getaddrinfo() asks the launcher, which refuses (after lwIP's DNS wait) while Wi-Fi is down, fails names a
# test scripted to fail (OSError(-202), as lwIP's EAI_FAIL reaches MicroPython on the ESP32), and answers with
# a loopback relay for the destination: the relay carries TCP and UDP, goes silent when Wi-Fi drops, and can
# stretch a TLS handshake to an ESP32's seconds. Host-side only.
import micropython

import _builtin
import _link

_s = _builtin.load("socket")
_g = globals()
for _n in dir(_s):
    if not _n.startswith("_") and _n not in _g:
        _g[_n] = getattr(_s, _n)
del _g, _n


@micropython.native  # C on a board: no traceback entry
def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    r = _link.get().call("resolve", host=host, port=port)
    if "gai_error" in r:
        raise OSError(r["gai_error"])
    return _s.getaddrinfo(r["ip"], r["port"], af, type, proto, flags)
