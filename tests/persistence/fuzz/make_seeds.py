#!/usr/bin/env python3
"""Writes the seed corpus of the journal rows fuzzer (tests/persistence/fuzz/corpus/seed-*).

An input is a list of SQLite values (type byte, length byte, bytes); see
journal_rows_fuzz_entry.hpp for what each value becomes. The seeds are healthy rows
of the fuzz entity and the damaged rows issue 9 found: invalid UTF-8, text or huge
schema versions, text sequence numbers, undecodable payloads, a snapshot above the
highest seq, gaps.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

INT, TEXT, BLOB, NULL, REAL = 0, 1, 2, 3, 4


def value(t, data=b""):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if t == INT:
        data = struct.pack("<q", data)
    if t == REAL:
        data = struct.pack("<d", data)
    assert len(data) < 256
    return bytes([t, len(data)]) + data


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


def cbor(x):
    if isinstance(x, bool):
        return b"\xf5" if x else b"\xf4"
    if isinstance(x, int):
        return cbor_head(0, x) if x >= 0 else cbor_head(1, -1 - x)
    if isinstance(x, bytes):  # a text string given as raw bytes (may be invalid UTF-8)
        return cbor_head(3, len(x)) + x
    if isinstance(x, str):
        b = x.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(x, list):
        return cbor_head(4, len(x)) + b"".join(cbor(i) for i in x)
    if isinstance(x, dict):
        return cbor_head(5, len(x)) + b"".join(cbor(k) + cbor(v) for k, v in x.items())
    raise TypeError(x)


def meta(schema=value(INT, 2), offset=value(INT, 100), jid=value(INT, 77)):
    return schema + offset + jid


def ident(name="acct|a", deleted_to=0):
    return value(TEXT, name) + value(INT, deleted_to)


def snapshot(seq=1, manifest="fuzz.state", version=1, payload=None):
    if payload is None:
        payload = cbor({"last": "x", "total": 1, "items": []})
    return value(INT, seq) + value(TEXT, manifest) + value(INT, version) + value(BLOB, payload)


def event(seq, manifest, payload, version=1, tags="t", writer="w", pid=1):
    seq_v = seq if isinstance(seq, bytes) else value(INT, seq)
    version_v = version if isinstance(version, bytes) else value(INT, version)
    return (value(INT, pid) + seq_v + value(TEXT, manifest) + version_v + value(BLOB, payload)
            + value(TEXT, tags) + value(TEXT, writer) + value(INT, 0))


def healthy_events():
    return (event(1, "fuzz.text", cbor({"s": "hi"}))
            + event(2, "fuzz.number", cbor({"n": 5}))
            + event(3, "fuzz.list", cbor({"items": ["a", "b"]})))


SEEDS = {
    "healthy": meta() + ident() + snapshot() + healthy_events(),
    "invalid-utf8-payload": meta() + ident() + snapshot()
    + event(1, "fuzz.text", cbor({"s": b"ada\xff\xfe"})),
    "invalid-utf8-columns": meta() + ident("acct|\xff") + snapshot(manifest="fuzz.st\xfe")
    + event(1, "fuzz.\xff", cbor({"s": "x"}), tags="t\x1f\xfe", writer="\xc0\xaf"),
    "schema-version-text": meta(schema=value(TEXT, "two")) + ident() + snapshot() + healthy_events(),
    "schema-version-huge": meta(schema=value(INT, 99999999999)) + ident() + snapshot()
    + healthy_events(),
    "schema-version-real": meta(schema=value(REAL, 2.5)) + ident() + snapshot() + healthy_events(),
    "schema-version-missing": meta(schema=value(NULL)) + ident() + snapshot() + healthy_events(),
    "meta-text": meta(offset=value(TEXT, "lots"), jid=value(BLOB, b"\x01")) + ident()
    + snapshot() + healthy_events(),
    "seq-and-version-text": meta() + ident() + snapshot()
    + event(value(TEXT, "three"), "fuzz.text", cbor({"s": "x"}))
    + event(2, "fuzz.number", cbor({"n": 1}), version=value(TEXT, "v9"))
    + event(3, "fuzz.number", cbor({"n": 1}), version=-1)
    + event(4, "fuzz.number", cbor({"n": 1}), version=1 << 40),
    "seq-negative": meta() + ident() + snapshot(seq=-5) + event(-1, "fuzz.text", cbor({"s": "x"}))
    + event(0, "fuzz.text", cbor({"s": "y"})),
    "payload-not-cbor": meta() + ident() + snapshot(payload=b"\x01\x02")
    + event(1, "fuzz.text", b"\xff\x13\x00") + event(2, "fuzz.text", b""),
    "payload-wrong-type": meta() + ident() + snapshot(payload=cbor({"total": "many"}))
    + event(1, "fuzz.number", cbor({"n": "x"})) + event(2, "fuzz.list", cbor({"items": [1, 2]})),
    "payload-deep": meta() + ident() + snapshot()
    + event(1, "fuzz.list", b"\x81" * 200 + b"\x00"),
    "snapshot-above-highest": meta() + ident() + snapshot(seq=9) + healthy_events(),
    "gap": meta() + ident(deleted_to=0) + snapshot()
    + event(1, "fuzz.text", cbor({"s": "a"})) + event(5, "fuzz.text", cbor({"s": "b"})),
    "deleted-prefix": meta() + ident(deleted_to=2) + snapshot(seq=2)
    + event(3, "fuzz.text", cbor({"s": "c"})) + event(4, "fuzz.number", cbor({"n": 1})),
    "orphaned-events": meta() + ident() + snapshot()
    + event(1, "fuzz.text", cbor({"s": "a"}), pid=7) + event(2, "fuzz.text", cbor({"s": "b"}), pid=7),
    "unknown-manifest-and-version": meta() + ident() + snapshot(version=9)
    + event(1, "fuzz.unknown", cbor({"s": "a"})) + event(2, "fuzz.text", cbor({"s": "b"}), version=3),
    "nul-bytes": meta() + ident("acct|a\x00b") + snapshot()
    + event(1, "fuzz.text", cbor({"s": "a\x00b"}), tags="\x00", writer="\x00"),
    "big-numbers": meta() + ident(deleted_to=(1 << 63) - 1) + snapshot(seq=(1 << 63) - 1)
    + event((1 << 63) - 1, "fuzz.number", cbor({"n": (1 << 63) - 1}))
    + event(2, "fuzz.number", cbor({"n": (1 << 64) - 1})),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
