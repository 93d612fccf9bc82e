# Test helpers for the MicroPython side of transport tests: RAM LittleFS + FlashQueue + MqttLink over TLS.
import vfs

from flashqueue import FlashQueue
from mqtt_link import MqttLink
from sim.ramblock import RamBlockDev
from tlsconfig import client_context


def read(path):
    with open(path, "rb") as f:
        return f.read()


def mount_queue(capacity=65536, blocks=64, mount="/flash"):
    bd = RamBlockDev(4096, blocks)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), mount)
    return bd, FlashQueue(mount + "/q", capacity)


def tls_link(device_id, port, keydir, idle=None, timeout_ms=1500, keepalive=10):
    ctx = client_context(read(keydir + "/k.der"), read(keydir + "/c.der"), read(keydir + "/ca.der"))
    return MqttLink(device_id, "localhost", port, ssl_context=ctx, keepalive=keepalive, idle=idle,
                    timeout_ms=timeout_ms)
