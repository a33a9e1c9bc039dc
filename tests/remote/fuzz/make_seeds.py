#!/usr/bin/env python3
"""Writes the seed corpus of the wire fuzzer (tests/remote/fuzz/corpus/seed-*).

Byte 0 of every input selects the fuzz setting (bit 0: secret, bit 1: initiator);
the rest is what a peer sends. The layout follows docs/transport.md.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

MAGIC = 0x54525045
HELLO, WELCOME, AUTH, REFUSE = 1, 2, 3, 4
MESSAGE, REQUEST, RESPONSE = 16, 17, 18
MESSAGE_TO, REQUEST_TO, PACKET = 19, 20, 21
HEARTBEAT, GOODBYE = 32, 34


def varint(x):
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return varint(len(b)) + b


def frame(t, body=b""):
    return struct.pack(">IB", len(body) + 1, t) + body


def identity(cluster="fuzz", version=1, incarnation=0x2222, host="127.0.0.1", port=7001):
    return (struct.pack(">IHQIH", MAGIC, version, incarnation, 65536, port)
            + string(host) + string(cluster) + bytes(range(32)))


def element(manifest, payload, version=1):
    return string(manifest) + varint(version) + struct.pack(">I", len(payload)) + payload


def elements(*els):
    return bytes([len(els)]) + b"".join(els)


CBOR_PING = bytes.fromhex("a2616e0764746578746568656c6c6f")  # {"n": 7, "text": "hello"}
HANDSHAKE = frame(HELLO, identity()) + frame(AUTH, b"\x00")
APP = (frame(MESSAGE, string("echo") + elements(element("test.ping", CBOR_PING)))
       + frame(REQUEST, varint(5) + string("echo")
               + elements(element("troupe.string", b"\x62hi"), element("troupe.i64", b"\x07")))
       + frame(RESPONSE, varint(5) + b"\x00" + elements(element("test.pong", CBOR_PING)))
       + frame(RESPONSE, varint(6) + b"\x01" + b"\x12" + string("invalid"))
       + frame(HEARTBEAT) + frame(HEARTBEAT)
       + frame(GOODBYE, b"\x01" + string("node shutting down")))

SEEDS = {
    "acceptor-session": b"\x00" + HANDSHAKE + APP,
    "acceptor-secret": b"\x01" + frame(HELLO, identity()) + frame(AUTH, b"\x20" + bytes(32)),
    "initiator-session": b"\x02" + frame(WELCOME, identity() + b"\x00") + APP,
    "initiator-secret": b"\x03" + frame(WELCOME, identity() + b"\x20" + bytes(32)),
    "wrong-cluster": b"\x00" + frame(HELLO, identity(cluster="other")),
    "wrong-version": b"\x00" + frame(HELLO, identity(version=2)),
    "self": b"\x00" + frame(HELLO, identity(incarnation=0x1111)),
    "refuse": b"\x02" + frame(REFUSE, b"\x15" + string("go away")),
    "garbage": b"\x00" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "oversize-length": b"\x00" + b"\xff\xff\xff\xff\x01",
    "zero-length": b"\x00" + b"\x00\x00\x00\x00",
    "truncated": b"\x00" + frame(HELLO, identity())[:20],
    "bad-varint": b"\x00" + HANDSHAKE + frame(REQUEST, b"\xff" * 11 + string("x")),
    "too-many-values": b"\x00" + HANDSHAKE + frame(MESSAGE, string("echo") + b"\x40"),
    "unexpected-frame": b"\x00" + HANDSHAKE + frame(99, b"??"),
    "pinned-and-packets": b"\x00" + HANDSHAKE
    + frame(MESSAGE_TO, struct.pack(">Q", 0x1111) + string("echo")
            + elements(element("test.ping", CBOR_PING)))
    + frame(REQUEST_TO, struct.pack(">Q", 0x3333) + varint(9) + string("echo")
            + elements(element("troupe.string", b"\x62hi")))
    + frame(PACKET, struct.pack(">Q", 0x1111) + string("membership")
            + element("cluster.gossip", b"\x01\x02\x03", 2))
    + frame(PACKET, struct.pack(">Q", 0) + string("") + element("x", b"")),
}

# Mode bit 2: one CBOR payload for the differential check against nlohmann.
CBOR = {
    "cbor-ping": CBOR_PING,
    "cbor-ints": bytes.fromhex("88" "00" "17" "1818" "19ffff" "1a00010000" "1b0000000100000000"
                               "20" "3bfffffffffffffffe"),
    "cbor-floats": bytes.fromhex("85" "f93c00" "f97e00" "fa3fc00000" "fb400921fb54442d18" "f9fc00"),
    # {"a": indefinite "bc", "b": indefinite h'010203', "c": indefinite [1]}
    "cbor-strings": bytes.fromhex("a3" "6161" "7f61626163ff" "6162" "5f4201024103ff"
                                  "6163" "9f01ff"),
    "cbor-nested": bytes.fromhex("81" * 40 + "a0"),
    "cbor-tag": bytes.fromhex("c11a514b67b0"),
    "cbor-simple": bytes.fromhex("83f4f5f6"),
    "cbor-duplicate-keys": bytes.fromhex("a2616101616102"),
}
for name, payload in CBOR.items():
    SEEDS[name] = b"\x04" + payload

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {OUT}")
