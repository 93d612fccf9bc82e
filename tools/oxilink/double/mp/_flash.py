# The board's flash: a LittleFS image FILE on the host, as an ESP32's "vfs" partition (4096-byte erase blocks,
# littlefs v2 with MicroPython's defaults). Writes go to the file at once, so the image survives a killed
# process like flash survives a power cut. mount_root() does what ports/esp32/modules/_boot.py and
# inisetup.py do: mount at "/", and on an erased (all 0xFF) image make a filesystem and the default boot.py.
import vfs

_ERASED = b"\xff" * 4096


class ImageFlash:
    def __init__(self, path, block_size=4096):
        self._f = open(path, "r+b")
        self.block_size = block_size
        self.block_count = self._f.seek(0, 2) // block_size

    def readblocks(self, block, buf, offset=0):
        self._f.seek(block * self.block_size + offset)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            for b in range(len(buf) // self.block_size):
                self._erase(block + b)
            offset = 0
        self._f.seek(block * self.block_size + offset)
        self._f.write(buf)

    def _erase(self, block):
        self._f.seek(block * self.block_size)
        self._f.write(_ERASED)

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            self._erase(arg)
            return 0
        if op == 3:
            self._f.flush()
        return 0

    def info(self):  # esp32.Partition.info(): (type, subtype, addr, size, label, encrypted)
        return (1, 0x81, 0x200000, self.block_count * self.block_size, "vfs", False)


_DEFAULT_BOOT = """\
# This file is executed on every boot (including wake-boot from deepsleep)
#import esp
#esp.osdebug(None)
#import webrepl
#webrepl.start()
"""


def _blank(bdev):
    buf = bytearray(bdev.block_size)
    bdev.readblocks(0, buf)
    return buf == _ERASED


def mount_root(bdev, out):
    try:
        vfs.mount(vfs.VfsLfs2(bdev), "/")
        return "mounted"
    except OSError:
        pass
    if not _blank(bdev):
        out("The filesystem appears to be corrupted. If you had important data there, you\r\n"
            "may want to make a flash snapshot to try to recover it. Otherwise, perform\r\n"
            "factory reprogramming of MicroPython firmware (completely erase flash, followed\r\n"
            "by firmware programming).\r\n")
        return "corrupted"
    out("Performing initial setup\r\n")
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), "/")
    with open("/boot.py", "w") as f:
        f.write(_DEFAULT_BOOT)
    return "formatted"
