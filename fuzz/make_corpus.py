"""Writes the seed corpus for fuzz_safetensors_header (stdlib only; rerun to regenerate).
valid_* files must parse and invalid_* files must be refused: tests/test_safetensors.cpp replays
them through the fuzz entry point and checks that split, so the seeds double as regression cases."""
import json
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "safetensors_header")
os.makedirs(out, exist_ok=True)


def raw(header_text, data=b"", pad=True):
    h = header_text.encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def st(tensors, data, metadata=None):
    """tensors: [(name, dtype, shape, begin, end)] -> a file with exactly that header."""
    h = {}
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, dtype, shape, b, e in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}
    return raw(json.dumps(h, separators=(",", ":")), data)


cases = {
    "valid_empty.safetensors": raw("{}"),
    "valid_f32.safetensors": st([("w", "F32", [2, 2], 0, 16)], bytes(range(16))),
    "valid_mixed.safetensors": st(
        [("a", "F64", [1], 0, 8), ("b", "BF16", [2], 8, 12), ("c", "F16", [1, 2], 12, 16), ("d", "I64", [1], 16, 24),
         ("e", "I32", [1], 24, 28), ("f", "I16", [1], 28, 30), ("g", "I8", [1], 30, 31), ("h", "U8", [1], 31, 32),
         ("i", "BOOL", [0], 32, 32)], bytes(32), {"format": "pt", "note": "seed"}),
    "valid_scalar_and_empty.safetensors": st([("s", "F32", [], 0, 4), ("z", "F16", [0, 5], 4, 4)], b"\0\0\x80\x3f"),
    "valid_unordered_offsets.safetensors": st([("late", "U8", [2], 2, 4), ("early", "U8", [2], 0, 2)], b"abcd"),
    "invalid_empty.bin": b"",
    "invalid_7_bytes.bin": b"\x08\0\0\0\0\0\0",
    "invalid_header_beyond_file.bin": struct.pack("<Q", 1000) + b"{}",
    "invalid_absurd_header.bin": struct.pack("<Q", 1 << 40) + b"{}",
    "invalid_not_json.bin": raw("{not json"),
    "invalid_array_header.bin": raw("[1,2]"),
    "invalid_unknown_dtype.bin": st([("w", "F8_E4M3", [4], 0, 4)], bytes(4)),
    "invalid_wrong_size.bin": st([("w", "F32", [2, 2], 0, 12)], bytes(12)),
    "invalid_out_of_range.bin": st([("w", "F32", [4], 0, 16)], bytes(8)),
    "invalid_overlap.bin": st([("a", "F32", [2], 0, 8), ("b", "F32", [2], 4, 12)], bytes(12)),
    "invalid_gap.bin": st([("a", "F32", [1], 0, 4), ("b", "F32", [1], 8, 12)], bytes(12)),
    "invalid_trailing.bin": st([("a", "F32", [1], 0, 4)], bytes(8)),
    "invalid_end_before_begin.bin": st([("a", "U8", [0], 4, 0)], bytes(4)),
    "invalid_duplicate.bin": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                 '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"),
    "invalid_metadata_value.bin": st([], b"", {"n": 3}),
    "invalid_negative_shape.bin": st([("a", "U8", [-1], 0, 0)], b""),
    "invalid_float_shape.bin": st([("a", "U8", [1.0], 0, 1)], b"x"),
    "invalid_overflow_shape.bin": st([("a", "F32", [1 << 62, 1 << 62], 0, 4)], bytes(4)),
    "invalid_missing_offsets.bin": raw('{"a":{"dtype":"U8","shape":[1]}}', b"x"),
}
for name, data in cases.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(cases)} seeds to {out}")
