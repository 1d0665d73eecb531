#!/usr/bin/env python3
"""Write the seed inputs of each fuzz target into fuzz/seeds/<target>/ (small valid examples of each format,
so the fuzzers start from the interesting part of the input space). Run from anywhere; idempotent."""
import hashlib
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def put(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


torrents = sorted(f for f in os.listdir(FIXTURES) if f.endswith(".torrent"))
for t in torrents:
    data = open(os.path.join(FIXTURES, t), "rb").read()
    put("metainfo", t, data)
    put("bencode", t, data)
for i, b in enumerate([b"i42e", b"i-7e", b"4:spam", b"le", b"de", b"l4:spami3ee", b"d3:cow3:moo4:spam4:eggse",
                       b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"]):
    put("bencode", f"b{i}", b)

ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
for i, m in enumerate([f"magnet:?xt=urn:btih:{ih}",
                       f"magnet:?xt=urn:btih:{ih}&dn=Some%20Name+here&x.pe=127.0.0.1:6881&x.pe=[::1]:7000",
                       "magnet:?xt=urn:btih:YEX6BQDLUJKJVHOJ6UM3GNNKPQJWPKEK&dn=x&tr=http%3A%2F%2Fa"]):
    put("magnet", f"m{i}", m.encode())

hs = bytes([19]) + b"BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04]) + bytes(range(20)) + b"-QS0001-abcdefghijkl"
put("wire_handshake", "h0", hs)
put("wire_handshake", "h1", hs + msg(2))

stream = (struct.pack(">I", 0) + msg(0) + msg(1) + msg(2) + msg(3) + msg(4, struct.pack(">I", 7))
          + msg(5, b"\xff\xc0") + msg(6, struct.pack(">III", 1, 0, 16384)) + msg(7, struct.pack(">II", 1, 0) + b"x" * 64)
          + msg(8, struct.pack(">III", 1, 0, 16384)) + msg(0x0E) + msg(0x0F)
          + msg(0x10, struct.pack(">III", 2, 16384, 16384)) + msg(0x11, struct.pack(">I", 3))
          + msg(20, b"\x00d1:md11:ut_metadatai1eee"))
put("wire_messages", "s0", b"\x00\x07" + stream)
put("wire_messages", "s1", b"\x03\x01" + stream)

put("wire_extended", "e0", b"\x00d1:md11:lt_donthavei7e11:ut_metadatai3e6:ut_pexi0ee13:metadata_sizei31235e4:reqqi500e1:pi6881e1:v11:qB 4.6.0 xxe")
put("wire_extended", "e1", b"\x01d8:msg_typei0e5:piecei0ee")
put("wire_extended", "e2", b"\x01d8:msg_typei1e5:piecei1e10:total_sizei20000ee" + b"y" * 64)
put("wire_extended", "e3", b"\x01d8:msg_typei2e5:piecei3ee")
put("wire_extended", "e4", b"\x02d5:added12:" + bytes([127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2])
    + b"7:added.f2:\x00\x106:added618:" + bytes(15) + b"\x01\x1a\xe1" + b"7:dropped6:" + bytes([10, 0, 0, 9, 0, 80]) + b"e")

nid = b"abcdefghij0123456789"
node = nid + bytes([127, 0, 0, 1, 0x1a, 0xe1])
krpc = [
    b"d1:ad2:id20:" + nid + b"e1:q4:ping1:t2:aa1:y1:qe",
    b"d1:ad2:id20:" + nid + b"6:target20:" + nid + b"e1:q9:find_node1:t2:aa1:y1:qe",
    b"d1:ad2:id20:" + nid + b"9:info_hash20:" + nid + b"e1:q9:get_peers1:t2:aa1:y1:qe",
    b"d1:ad2:id20:" + nid + b"12:implied_porti1e9:info_hash20:" + nid + b"4:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
    b"d1:rd2:id20:" + nid + b"5:nodes52:" + node + node + b"5:token4:abcd6:valuesl6:" + bytes([127, 0, 0, 1, 0x1a, 0xe1]) + b"ee1:t4:\x00\x00\x00\x011:y1:re",
    b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
    b"d1:ad2:id20:" + nid + b"e1:q4:vote1:t2:xy1:y1:qe",
]
for i, k in enumerate(krpc):
    put("krpc", f"k{i}", k)
    put("dht_node", f"k{i}", bytes([0, 3, len(k) & 0xff]) + k)
rnd = random.Random(1)
for i in range(8):
    put("dht_node", f"r{i}", bytes(rnd.randrange(256) for _ in range(256)))
for i in range(8):
    put("metadata_fetcher", f"r{i}", bytes(rnd.randrange(256) for _ in range(512)))
print("seeds written under", os.path.join(HERE, "seeds"))
