"""MQTT 3.1.1 control packets as a client sent them, parsed from the bytes a FaultProxy captured."""

from __future__ import annotations


def mqtt_packets(stream: bytes):
    """(packet type, flags, body) for each complete MQTT control packet in a client's byte stream."""
    i = 0
    while i < len(stream):
        first, length, shift, j = stream[i], 0, 0, i + 1
        while j < len(stream):
            length |= (stream[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not stream[j - 1] & 0x80:
                break
        if j + length > len(stream):
            return  # cut mid-packet by a dropped connection
        yield first >> 4, first & 0x0F, bytes(stream[j:j + length])
        i = j + length


def field(body: bytes, at: int) -> tuple[bytes, int]:
    n = int.from_bytes(body[at:at + 2], "big")
    return body[at + 2:at + 2 + n], at + 2 + n


def publishes(stream: bytes) -> list[dict]:
    """Every PUBLISH in a stream: topic, payload, qos, dup, retain and packet id (None at QoS 0)."""
    out = []
    for ptype, flags, body in mqtt_packets(stream):
        if ptype != 3:
            continue
        topic, at = field(body, 0)
        qos = (flags >> 1) & 3
        pid = None
        if qos:
            pid = int.from_bytes(body[at:at + 2], "big")
            at += 2
        out.append({"topic": topic.decode(), "payload": body[at:], "qos": qos, "dup": bool(flags & 8),
                    "retain": bool(flags & 1), "pid": pid})
    return out
