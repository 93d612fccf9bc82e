# The board double's serial REPL: MicroPython's pyexec (shared/runtime/pyexec.c, v1.28) as a board runs it on
# its UART, byte for byte where a host tool can tell:
#   friendly REPL: banner, ">>> " / "... ", echo, backspace, Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C cancel,
#                  Ctrl-D soft reset, Ctrl-E paste mode;
#   raw REPL:      "raw REPL; CTRL-B to exit\r\n>", code ended by Ctrl-D, "OK", output, \x04, error, \x04;
#                  Ctrl-D on an empty line soft-resets; raw-paste mode (Ctrl-E A Ctrl-A) with flow control.
# Ctrl-C from the host never arrives as a byte: the launcher turns it into SIGINT (a board's UART interrupt
# char), so it raises KeyboardInterrupt in running code; while reading input it reads as Ctrl-C.
# run() returns when the REPL asks for a soft reset, with the REPL mode the next run starts in.
import micropython
import select
import sys

import _link

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
_WINDOW = 128  # raw-paste flow-control window: half of MICROPY_REPL_STDIN_BUFFER_MAX (256)

_in = sys.stdin.buffer
_outb = sys.stdout.buffer
_poll = select.poll()
_poll.register(sys.stdin, select.POLLIN)
_byte = bytearray(1)


class PowerOff(Exception):
    """The launcher closed the serial line: the board lost power."""


def out(s):
    _outb.write(s.encode() if type(s) is str else s)


def getc():
    """The next byte from the serial line; CTRL_C when a Ctrl-C arrives meanwhile. Waits in short polls so
    scheduled callbacks (Timer, Pin IRQ) keep running, as they do while a board waits for REPL input."""
    while True:
        try:
            if _poll.poll(20):
                if not _in.readinto(_byte):
                    raise PowerOff
                return _byte[0]
        except KeyboardInterrupt:
            return CTRL_C


class SoftReset(Exception):
    pass


@micropython.native  # native code adds no traceback entry: errors show only the user's frames, as on a board
def execute(source, g, mode, print_eof=False, filename="<stdin>"):
    """pyexec's parse_compile_execute: True when the code finished, False after an exception; raises
    SoftReset after SystemExit. With print_eof (raw REPL): \x04 after the output, then the error, then \x04."""
    ok = True
    soft = False
    eof_sent = False
    try:
        exec(compile(source, filename, mode), g)
    except SystemExit:
        soft = True
    except BaseException as e:  # noqa: B036 - KeyboardInterrupt and errors print as pyexec prints them
        ok = False
        if print_eof:
            out(b"\x04")
            eof_sent = True
        sys.print_exception(e)
    if print_eof:
        if not eof_sent:
            out(b"\x04")
        out(b"\x04")
    if soft:
        raise SoftReset
    return ok


def _continues(src):
    """Whether a friendly-REPL input needs more lines (mp_repl_continue_with_input, approximately)."""
    depth = 0
    quote = None
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if quote:
            if src.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c == "\\":
                i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        elif src.startswith('"""', i) or src.startswith("'''", i):
            quote = src[i:i + 3]
            i += 3
            continue
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    if quote and len(quote) == 3 or depth > 0:
        return True
    last = src.rstrip().split("\n")[-1] if src.strip() else ""
    if last.rstrip().endswith(":") or last.rstrip().endswith("\\"):
        return True
    return "\n" in src and not src.endswith("\n\n") and src.split("\n")[-1] != ""


def readline(prompt):
    """(line, ctrl): ctrl is CTRL_A/B/C/D/E when that key ended the input instead of Enter."""
    out(prompt)
    buf = []
    while True:
        c = getc()
        if c in (CTRL_A, CTRL_B, CTRL_C, CTRL_E) and (c == CTRL_C or not buf):
            return "".join(buf), c
        if c == CTRL_D and not buf:
            return "", CTRL_D
        if c in (13, 10):
            out("\r\n")
            return "".join(buf), None
        if c in (8, 127):
            if buf:
                buf.pop()
                out("\x08 \x08")
            continue
        if c == 27:  # an escape sequence (arrow keys): read and ignore it
            c2 = getc()
            if c2 == 91:
                while not 64 <= getc() <= 126:
                    pass
            continue
        if c == 9:  # no completion here: a tab indents
            buf.append("    ")
            out("    ")
            continue
        if c >= 32:
            buf.append(chr(c))
            out(chr(c))


def banner():
    impl = sys.implementation
    v = impl.version
    out("MicroPython v%d.%d.%d on the oxilink board double; %s\r\n" % (v[0], v[1], v[2], _machine_name()))
    out('Type "help()" for more information.\r\n')


def _machine_name():
    from _state import run

    return {"esp32c3": "ESP32C3 module with ESP32C3", "esp32s3": "ESP32S3 module with ESP32S3"}.get(
        run["platform"], "Generic ESP32 module with ESP32")


def friendly(g):
    """Returns the next mode ("raw") or raises SoftReset."""
    banner()
    while True:
        try:
            line, ctrl = readline(">>> ")
            if ctrl == CTRL_A:
                out("\r\n")
                return "raw"
            if ctrl == CTRL_B:
                out("\r\n")
                banner()
                continue
            if ctrl == CTRL_C:
                out("\r\n")
                continue
            if ctrl == CTRL_D:
                out("\r\n")
                raise SoftReset
            if ctrl == CTRL_E:
                src = _paste()
                if src is None:
                    continue
                execute(src, g, "exec")
                continue
            if not line:
                continue
            src = line
            cancelled = False
            while _continues(src):
                more, ctrl = readline("... ")
                if ctrl == CTRL_C:
                    out("\r\n")
                    cancelled = True
                    break
                if ctrl == CTRL_D:
                    break
                src += "\n" + more
                if not more:
                    break
            if cancelled:
                continue
            execute(src, g, "single")
        except KeyboardInterrupt:
            out("\r\n")


def _paste():
    out("\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    buf = bytearray()
    while True:
        c = getc()
        if c == CTRL_C:
            out("\r\n")
            return None
        if c == CTRL_D:
            out("\r\n")
            return buf.decode()
        buf.append(c)
        out("\r\n=== " if c == 13 else bytes((c,)))


def raw(g):
    """Returns the next mode ("friendly") or raises SoftReset."""
    _link.tell("repl", mode="raw")  # ESP-IDF logs are silenced in raw mode
    out("raw REPL; CTRL-B to exit\r\n")
    line = bytearray()
    while True:
        line = bytearray()
        out(">")
        while True:
            c = getc()
            if c == CTRL_A:
                if len(line) == 2 and line[0] == CTRL_E:
                    _raw_paste(line[1], g)
                    line = bytearray()
                    out(">")
                    continue
                out("raw REPL; CTRL-B to exit\r\n")
                line = bytearray()
                out(">")
                continue
            if c == CTRL_B:
                out("\r\n")
                _link.tell("repl", mode="friendly")
                return "friendly"
            if c == CTRL_C:
                line = bytearray()
                continue
            if c == CTRL_D:
                break
            line.append(c)
        out("OK")
        if not line:
            out("\r\n")
            raise SoftReset
        try:
            execute(bytes(line).decode(), g, "exec", print_eof=True)
        except KeyboardInterrupt:
            pass


def _raw_paste(cmd, g):
    if cmd != ord("A"):
        out(b"R\x00")
        return
    out(b"R\x01")
    out(bytes((_WINDOW & 0xFF, _WINDOW >> 8, 1)))
    buf = bytearray()
    remain = _WINDOW
    while True:
        c = getc()
        if c in (CTRL_C, CTRL_D):
            out(b"\x04")
            if c == CTRL_C:
                out(b"\x04")
                sys.print_exception(KeyboardInterrupt())
                out(b"\x04")
                return
            break
        buf.append(c)
        remain -= 1
        if remain == 0:
            out(b"\x01")
            remain = _WINDOW
    try:
        execute(bytes(buf).decode(), g, "exec", print_eof=True)
    except KeyboardInterrupt:
        pass


def run(mode, g):
    """The REPL loop after boot.py/main.py; returns the mode to start in after the soft reset it ends with."""
    while True:
        try:
            mode = raw(g) if mode == "raw" else friendly(g)
        except SoftReset:
            return mode
        except KeyboardInterrupt:  # a Ctrl-C while the REPL itself was printing: start the prompt again
            pass
