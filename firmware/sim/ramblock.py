# RAM block device for LittleFS on the unix port, with NOR-flash semantics and power-cut injection.
# Not deployed to boards. Geometry defaults to the ESP32's (4096-byte erase blocks).
#
# Power cut: after `cut_after` block writes/erases the device accepts no more. The write that hits the cut
# is optionally torn (its first `torn_bytes` bytes land), then OSError(EIO) is raised; every later write
# raises too. A test then builds a new RamBlockDev over `bytes(dev.data)` (the surviving bytes) and mounts a
# fresh filesystem object on it, like a board booting after the battery died.
#
# Full disk: `enospc=True` makes every write raise OSError(ENOSPC) (a filesystem that reports full).

import micropython

_EIO = 5
_ENOSPC = 28


@micropython.viper
def _program(dst: ptr8, start: int, src: ptr8, n: int):
    # NOR flash: programming can only clear bits.
    for i in range(n):
        dst[start + i] = dst[start + i] & src[i]


class PowerCut(OSError):
    pass


class RamBlockDev:
    def __init__(self, block_size=4096, block_count=128, data=None):
        self.block_size = block_size
        self.block_count = block_count
        if data is None:
            data = bytearray(b"\xff" * (block_size * block_count))
        else:
            data = bytearray(data)
            if len(data) != block_size * block_count:
                raise ValueError("data is %d bytes, geometry needs %d" % (len(data), block_size * block_count))
        self.data = data
        self.writes = 0  # program + erase operations, counted for power-cut sweeps
        self.bytes_programmed = 0  # for write amplification
        self.erases = 0
        self.cut_after = -1  # -1: never cut
        self.torn_bytes = 0
        self.dead = False
        self.enospc = False

    def _tick(self):
        if self.dead:
            raise PowerCut(_EIO)
        if self.enospc:
            raise OSError(_ENOSPC)
        if self.cut_after >= 0 and self.writes >= self.cut_after:
            self.dead = True
            return False
        self.writes += 1
        return True

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.data[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        alive = self._tick()
        n = len(buf) if alive else min(self.torn_bytes, len(buf))
        if offset is None:  # simple interface: erase, then write whole blocks
            for b in range(len(buf) // self.block_size):
                self._erase(block + b)
            offset = 0
        start = block * self.block_size + offset
        _program(self.data, start, buf, n)
        self.bytes_programmed += n
        if not alive:
            raise PowerCut(_EIO)

    def _erase(self, block):
        start = block * self.block_size
        self.data[start:start + self.block_size] = b"\xff" * self.block_size
        self.erases += 1

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase block
            if not self._tick():
                raise PowerCut(_EIO)
            self._erase(arg)
            return 0
        return 0

    def survivor(self):
        """A new device holding exactly the bytes that survived, as after a reboot."""
        return RamBlockDev(self.block_size, self.block_count, self.data)
