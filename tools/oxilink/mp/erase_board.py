# `make erase`: delete every file and folder on the board's filesystem, keeping MicroPython and the filesystem
# itself (`mpremote rm -r :/` stops at removing "/", which no VFS allows). Run with `mpremote run`.
import os


def _erase(folder):
    n = 0
    for entry in list(os.ilistdir(folder)):
        path = folder.rstrip("/") + "/" + entry[0]
        if entry[1] & 0x4000:
            n += _erase(path)
            os.rmdir(path)
        else:
            os.remove(path)
        print("removed", path)
        n += 1
    return n


print("erased: %d entries" % _erase("/"))
