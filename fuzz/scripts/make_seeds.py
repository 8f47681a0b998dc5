#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/seeds/ (committed; rerun after changing it).

Seeds are small, meaningful inputs: the protocol crate's shared vectors,
the calculator examples from the docs, and WebSocket streams covering each
frame kind, length encoding and refusal, in the websocket target's layout
(limit selector, split mode, stream; see fuzz_targets/websocket.rs).
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(ROOT, "seeds")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def slug(text):
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def client_frame():
    path = os.path.join(ROOT, "..", "crates", "protocol", "vectors", "client_frames.json")
    with open(path) as f:
        vectors = json.load(f)
    for v in vectors["valid"]:
        write("client_frame", "valid_" + slug(v["name"]), json.dumps(v["frame"], ensure_ascii=False))
    for v in vectors["invalid"]:
        write("client_frame", "invalid_" + slug(v["name"]), v["raw"])
    write("client_frame", "escaped_type", '{"type":"pi\\u006eg","nonce":1}')
    write("client_frame", "duplicate_type", '{"type":"ping","type":"chat","text":"x"}')


def calc_parse():
    examples = {
        "factorial": "5!", "double": "10!!", "triple": "7!!!", "spaces": " \t200! \n",
        "zero": "0!", "leading_zeros": "007!", "many_marks": "5!!!!!!!!!!!!!!",
        "u64_max": "18446744073709551615!", "u64_overflow": "18446744073709551616!",
        "huge": "99999999999999999999999!", "huge_marks": "99999999999999999999999!!!!!!",
        "billion": "1000000000!", "too_slow": "300000!", "big_step": "1000000000000000000!!!!!!!!!",
        "plain_space": "5 !", "plain_sign": "-3!", "plain_suffix": "3!x", "plain_text": "hello",
        "fullwidth": "\uff15!",
    }
    for name, text in examples.items():
        write("calc_parse", name, text)


def ws_frame(fin, opcode, payload, mask=b"\x37\xfa\x21\x3d", masked=True, length_form=None):
    out = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n <= 0xFFFF else 64)
    bit = 0x80 if masked else 0
    if form == 7:
        out.append(bit | n)
    elif form == 16:
        out.append(bit | 126)
        out += struct.pack(">H", n)
    else:
        out.append(bit | 127)
        out += struct.pack(">Q", n)
    if masked:
        out += mask
        out += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return bytes(out)


def websocket():
    # Limit selectors (index into LIMITS): 5 = 4096, 6 = 16384, 2 = 125.
    L4096, L16K, L125 = 5, 6, 2
    whole = 0x00
    onebyte = 0xFF

    def seed(name, limit, stream, mode=whole, lengths=b""):
        write("websocket", name, bytes([limit, mode]) + lengths + stream)

    hello = ws_frame(True, 0x1, b"Hello")
    seed("text", L4096, hello)
    seed("text_byte_by_byte", L4096, hello, onebyte)
    seed("text_split_in_header", L4096, hello, 0x02, bytes([1, 3]))
    seed("binary", L4096, ws_frame(True, 0x2, bytes(range(40))))
    frags = (ws_frame(False, 0x1, b"Hel") + ws_frame(True, 0x9, b"ping")
             + ws_frame(False, 0x0, b"l") + ws_frame(True, 0x0, b"o"))
    seed("fragments_with_ping", L4096, frags, 0x03, bytes([4, 0, 9]))
    seed("pong", L4096, ws_frame(True, 0xA, b"x"))
    seed("close_normal", L4096, ws_frame(True, 0x8, struct.pack(">H", 1000) + b"bye"))
    seed("close_empty", L4096, ws_frame(True, 0x8, b""))
    seed("close_one_byte", L4096, ws_frame(True, 0x8, b"\x03"))
    seed("close_bad_code", L4096, ws_frame(True, 0x8, struct.pack(">H", 1005)))
    seed("close_bad_utf8", L4096, ws_frame(True, 0x8, struct.pack(">H", 1000) + b"\xff\xfe"))
    seed("text_invalid_utf8", L4096, ws_frame(True, 0x1, b"\xce\xba\xff"))
    seed("text_utf8_across_fragments", L4096,
         ws_frame(False, 0x1, b"\xce") + ws_frame(True, 0x0, b"\xba"))
    seed("len16", L4096, ws_frame(True, 0x1, b"a" * 300))
    seed("len64", L16K, ws_frame(True, 0x2, b"b" * 70, length_form=64))
    seed("len64_msb", L16K, bytes([0x82, 0xFF, 0x80]) + bytes(7) + bytes(4))
    seed("too_big", L125, ws_frame(True, 0x1, b"c" * 200))
    seed("fragments_too_big", L125, ws_frame(False, 0x2, b"d" * 100) + ws_frame(True, 0x0, b"e" * 100))
    seed("unmasked", L4096, ws_frame(True, 0x1, b"hi", masked=False))
    seed("rsv_bit", L4096, bytes([0xC1]) + ws_frame(True, 0x1, b"hi")[1:])
    seed("reserved_opcode", L4096, ws_frame(True, 0x3, b"hi"))
    seed("fragmented_ping", L4096, ws_frame(False, 0x9, b"hi"))
    seed("big_ping", L4096, ws_frame(True, 0x9, b"p" * 126))
    seed("stray_continuation", L4096, ws_frame(True, 0x0, b"x"))
    seed("interleaved_messages", L4096, ws_frame(False, 0x1, b"a") + ws_frame(True, 0x2, b"b"))
    seed("truncated", L4096, hello[:-2])


if __name__ == "__main__":
    shutil.rmtree(SEEDS, ignore_errors=True)
    client_frame()
    calc_parse()
    websocket()
    for target in sorted(os.listdir(SEEDS)):
        print(target, len(os.listdir(os.path.join(SEEDS, target))), "seeds")
