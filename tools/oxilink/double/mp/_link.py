# The board double's wire to its launcher (tools/oxilink/double/boardlink.py): TCP connections on loopback,
# JSON lines. call() is a request the launcher answers (Wi-Fi, DNS, the watchdog); event() is one-way.
# Nothing here is part of a board: it stands for the hardware the launcher simulates.
import json

import _builtin

_socket = _builtin.load("socket")
_thread = _builtin.load("_thread")
_links = {}  # thread id -> Link
_port_token = [None]


class Link:
    """One connection; one per thread (no locks, which a Ctrl-C could leave held): with a GIL (the ESP32's
    threading model, and the esp32like build) scheduled callbacks may run on any thread."""

    def __init__(self, port, token):
        s = _socket.socket()
        s.connect(_socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self._s = s
        self._n = 0
        self._replies = {}  # replies read by another (nested or abandoned) call
        self.event("hello", token=token)

    def _send(self, msg):
        # A Ctrl-C (KeyboardInterrupt) must not leave half a line on the wire: finish, then raise it.
        data = (json.dumps(msg) + "\n").encode()
        mv = memoryview(data)
        interrupted = None
        while mv:
            try:
                n = self._s.write(mv)
            except KeyboardInterrupt as e:
                interrupted = e
                continue
            mv = mv[n:]
        if interrupted is not None:
            raise interrupted

    def event(self, op, **args):
        args["op"] = op
        self._send(args)

    def call(self, op, **args):
        # A scheduled callback (a Timer, an IRQ) may make its own call while this one waits, and a Ctrl-C may
        # abandon a call: replies are matched by id, and one read by the wrong caller is kept for its owner.
        self._n += 1
        me = self._n
        args["op"] = op
        args["id"] = me
        self._send(args)
        while me not in self._replies:
            line = self._s.readline()
            if not line:
                raise OSError(5, "board double: the launcher went away")
            try:
                got = json.loads(line)
            except ValueError:  # the rest of a line a Ctrl-C cut in two
                continue
            self._replies[got.get("id")] = got
        reply = self._replies.pop(me)
        err = reply.get("error")
        if err is not None:
            if type(err) is int:
                raise OSError(err)
            raise OSError(err)
        return reply


def connect(port, token):
    _port_token[0] = (port, token)
    return get()


def get():
    me = _thread.get_ident()
    link = _links.get(me)
    if link is None:
        link = _links[me] = Link(*_port_token[0])
    return link


def tell(op, **args):
    """An event that a Ctrl-C must not stop (the board's own bookkeeping, not the user's code)."""
    while True:
        try:
            get().event(op, **args)
            return
        except KeyboardInterrupt:
            pass
