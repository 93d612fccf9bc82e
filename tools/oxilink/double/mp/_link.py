# The board double's wire to its launcher (tools/oxilink/double/board.py): one TCP connection on loopback,
# JSON lines. call() is a request the launcher answers (Wi-Fi, DNS, the watchdog); event() is one-way.
# Nothing here is part of a board: it stands for the hardware the launcher simulates.
import json

import _builtin

_socket = _builtin.load("socket")
_thread = _builtin.load("_thread")
_link = None


class Link:
    def __init__(self, port, token):
        s = _socket.socket()
        s.connect(_socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self._s = s
        self._n = 0
        self._replies = {}  # replies read by another (nested or abandoned) call
        # With a GIL (the ESP32's threading model, and the esp32like build) scheduled callbacks may run on any
        # thread, so the wire is shared by threads; a callback nested in a call on the same thread re-enters.
        self._lock = _thread.allocate_lock()
        self._owner = None
        self._depth = 0
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

    def _enter(self):
        me = _thread.get_ident()
        if self._owner != me:
            self._lock.acquire()
            self._owner = me
        self._depth += 1

    def _leave(self):
        self._depth -= 1
        if not self._depth:
            self._owner = None
            self._lock.release()

    def event(self, op, **args):
        args["op"] = op
        self._enter()
        try:
            self._send(args)
        finally:
            self._leave()

    def call(self, op, **args):
        self._enter()
        try:
            return self._call(op, args)
        finally:
            self._leave()

    def _call(self, op, args):
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
            got = json.loads(line)
            self._replies[got.get("id")] = got
        reply = self._replies.pop(me)
        err = reply.get("error")
        if err is not None:
            if type(err) is int:
                raise OSError(err)
            raise OSError(err)
        return reply


def connect(port, token):
    global _link
    _link = Link(port, token)
    return _link


def get():
    return _link


def tell(op, **args):
    """An event that a Ctrl-C must not stop (the board's own bookkeeping, not the user's code)."""
    while True:
        try:
            _link.event(op, **args)
            return
        except KeyboardInterrupt:
            pass
