# Host-side access to a board double's flash image, with the same littlefs code the board runs
# (_flash.ImageFlash, mounted at /flash instead of /). Used by tools/oxilink/double/flashimage.py:
#   micropython _flashtool.py IMAGE COMMANDS.json  -> one JSON line of results
# Commands: ["format"] (as inisetup does on an erased flash), ["ls"] (every file: path, size, sha256),
# ["read", path] (hex), ["put", host_path, path], ["remove", path], ["exists", path].
import binascii
import hashlib
import json
import os
import sys

import vfs

import _flash

image, commands = sys.argv[1], sys.argv[2]
with open(commands) as f:
    commands = json.load(f)
bdev = _flash.ImageFlash(image)
out = []


def _mount():
    try:
        vfs.mount(vfs.VfsLfs2(bdev), "/flash")
        return True
    except OSError:
        return False


def _walk(top, acc):
    for name, kind, *_ in os.ilistdir(top):
        path = top.rstrip("/") + "/" + name
        if kind & 0x4000:
            _walk(path, acc)
        else:
            h = hashlib.sha256()
            size = 0
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(512)
                    if not chunk:
                        break
                    size += len(chunk)
                    h.update(chunk)
            acc.append([path[len("/flash"):], size, binascii.hexlify(h.digest()).decode()])
    return acc


def _makedirs(path):
    parts = path.strip("/").split("/")[:-1]
    cur = "/flash"
    for p in parts:
        cur += "/" + p
        try:
            os.mkdir(cur)
        except OSError:
            pass


mounted = _mount()
for cmd in commands:
    op = cmd[0]
    if op == "format":
        if mounted:
            vfs.umount("/flash")
        vfs.VfsLfs2.mkfs(bdev)
        vfs.mount(vfs.VfsLfs2(bdev), "/flash")
        with open("/flash/boot.py", "w") as f:
            f.write(_flash._DEFAULT_BOOT)
        mounted = True
        out.append(True)
    elif not mounted:
        out.append({"error": "no filesystem (erased or corrupted flash)"})
    elif op == "ls":
        out.append(_walk("/flash", []))
    elif op == "read":
        try:
            with open("/flash" + cmd[1], "rb") as f:
                out.append(binascii.hexlify(f.read()).decode())
        except OSError:
            out.append(None)
    elif op == "exists":
        try:
            os.stat("/flash" + cmd[1])
            out.append(True)
        except OSError:
            out.append(False)
    elif op == "put":
        _makedirs(cmd[2])
        with open(cmd[1], "rb") as src, open("/flash" + cmd[2], "wb") as dst:
            while True:
                chunk = src.read(1024)
                if not chunk:
                    break
                dst.write(chunk)
        out.append(True)
    elif op == "remove":
        try:
            os.remove("/flash" + cmd[1])
            out.append(True)
        except OSError:
            out.append(False)
if mounted:
    vfs.umount("/flash")
print(json.dumps(out))
