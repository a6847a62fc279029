"""Format version 2 conformance (docs/format.md, "File format", "Versions"):
a small v2 file, written here by a writer that follows the document alone
(json, struct and zlib, no vitrust), from three of the shared vectors
(tests/vectors/vd_v2.json). The committed copy, tests/data/format_v2.safetensors,
must be exactly what that writer gives, and vitrust must read it as the
vectors say; vitrust's own file of the same tensors must carry the same
metadata, so either side drifting from the document fails here."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

import vitrust

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "format_v2.safetensors"
VECTORS = json.loads((HERE / "vectors" / "vd_v2.json").read_text())["expand_tensor"]
# (tensor name, vector): order F with thresholds, order C at comparator_bits 8, a 1-D tensor in order F.
PICKED = {"conv": 3, "fc": 7, "vec": 6}
LAM = 0.5


def _mask(v: dict) -> np.ndarray:
    return np.array([c == "1" for c in v["mask_c_order"]], dtype=bool)


def _index(v: dict) -> np.ndarray:
    """The vector's per-block stream bits as index words (docs/format.md, "Index layout")."""
    wpb = math.ceil(v["block_steps"] * v["n_in"] / 64)
    n_blocks = len(v["block_bits"])
    words = np.zeros(wpb * n_blocks, dtype=np.uint64)
    for b, text in enumerate(v["block_bits"]):
        for i, c in enumerate(text):
            if c == "1":
                words[b * wpb + i // 64] |= np.uint64(1) << np.uint64(i % 64)
    n = math.prod(v["shape"])
    last = math.ceil((n - (n_blocks - 1) * v["block_steps"] * v["n_out"]) / v["n_out"]) * v["n_in"]
    return words[: (n_blocks - 1) * wpb + math.ceil(last / 64)]


def _values(v: dict) -> np.ndarray:
    """Exactly representable float32 values, one per kept weight, in stream order."""
    return (np.arange(1, _mask(v).sum() + 1) * 0.25).astype("<f4")


def _stream_positions(v: dict) -> np.ndarray:
    """Flat C index of each stream position (docs/format.md, "Order")."""
    n = math.prod(v["shape"])
    rows = v["shape"][0] if len(v["shape"]) >= 2 else 1
    p = np.arange(n)
    return p if v["order"] == "C" else (p % rows) * (n // rows) + p // rows


def _config(v: dict) -> dict:
    # The config's own threshold is stored and range-checked but unused.
    return {"comparator_bits": v["nc"], "flip_flops": v["k"], "n_in": v["n_in"], "n_out": v["n_out"],
            "taps": v["taps"], "threshold": 1}


def independent_file() -> bytes:
    """The v2 file of the picked vectors, written from the document."""
    stored = {}
    sparse = {}
    for name, i in PICKED.items():
        v = VECTORS[i]
        stored[f"{name}.vitrust.index"] = ("U64", _index(v).astype("<u8").tobytes())
        stored[f"{name}.vitrust.values"] = ("F32", _values(v).tobytes())
        stored[f"{name}.vitrust.thresholds"] = ("U8", bytes(v["thresholds"]))
        rec = {"block_steps": v["block_steps"], "config": _config(v), "dtype": "F32", "lam": LAM,
               "nnz": int(_mask(v).sum()), "shape": v["shape"]}
        if v["order"] == "F":
            rec["order"] = "F"  # written only for F
        sparse[name] = rec
    size = {"U64": 8, "F32": 4, "U8": 1}
    tensors = {n: {"crc32": zlib.crc32(b), "dtype": dt, "shape": [len(b) // size[dt]]} for n, (dt, b) in stored.items()}
    meta = {"sparse": sparse, "tensors": tensors, "version": 2}
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    meta = {"check": zlib.crc32(canonical), **meta}
    header, data, offset = {}, b"", 0
    for n in sorted(stored):
        dt, b = stored[n]
        header[n] = {"dtype": dt, "shape": [len(b) // size[dt]], "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        data += b
    header["__metadata__"] = {"vitrust": json.dumps(meta, separators=(",", ":"))}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def test_the_committed_file_is_the_documents_file():
    assert FIXTURE.read_bytes() == independent_file()


def test_vitrust_reads_the_file_as_the_vectors_say():
    got = vitrust.load_file(FIXTURE)
    assert sorted(got) == sorted(PICKED)
    for name, i in PICKED.items():
        v, sp = VECTORS[i], got[name]
        assert sp.order == v["order"] and sp.shape == tuple(v["shape"]) and sp.lam == LAM
        assert sp.thresholds.tolist() == v["thresholds"]
        np.testing.assert_array_equal(sp.mask().reshape(-1), _mask(v))
        dense = np.zeros(math.prod(v["shape"]), np.float32)
        pos = _stream_positions(v)
        dense[pos[_mask(v)[pos]]] = _values(v)
        np.testing.assert_array_equal(sp.to_dense().reshape(-1), dense)


def test_vitrusts_file_of_the_same_tensors_has_the_same_metadata(tmp_path):
    path = tmp_path / "same.safetensors"
    vitrust.save_file(vitrust.load_file(FIXTURE), path)

    def meta(p):
        raw = Path(p).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        return json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["vitrust"])

    assert meta(path) == meta(FIXTURE)
    assert same_loaded(vitrust.load_file(path), vitrust.load_file(FIXTURE))


def same_loaded(a, b):
    from fuzzing import same

    return same(a, b)


if __name__ == "__main__":  # regenerates the committed file
    FIXTURE.write_bytes(independent_file())
