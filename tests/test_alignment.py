"""Tensors at offsets their dtype does not divide: safetensors packs tensors
without padding, so a float64 tensor after an odd number of float16 values
sits misaligned in the file, and every reader must still serve it."""

import json
import struct

import numpy as np
from safetensors.numpy import save_file as st_save

import vitrust
from vitrust._cli import main

from reference import kept_values

RNG = np.random.default_rng(11)


def _offsets(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: 8 + n + v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}


def test_misaligned_values_load_expand_and_unpack(tmp_path):
    # The CLI writes tensors in name order: "a"'s float16 values (an odd count
    # of them) push "w"'s float64 values off a multiple of 8.
    src = {"a": RNG.standard_normal((9, 35)).astype(np.float16), "w": RNG.standard_normal((24, 40))}
    st_save(src, str(tmp_path / "src.safetensors"))
    path = tmp_path / "m.safetensors"
    assert main(["prune", str(tmp_path / "src.safetensors"), "-o", str(path), "--rate", "0.7", "--min-size", "1",
                 "-q"]) == 0
    offsets = _offsets(path)
    assert any(off % 8 for name, off in offsets.items() if name.startswith("w.")), offsets  # the case under test
    back = vitrust.load_file(path)
    for name, w in src.items():
        got = back[name]
        np.testing.assert_array_equal(got.values, kept_values(w, got))
        dense = np.where(got.mask(), w, 0)
        np.testing.assert_array_equal(got.to_dense(), dense)
        x = RNG.standard_normal((w.shape[1], 3)).astype(w.dtype)
        np.testing.assert_allclose(got @ x, dense @ x, rtol=1e-2 if w.dtype == np.float16 else 1e-12, atol=1e-2)
    assert main(["unpack", str(path), "-o", str(tmp_path / "d.safetensors")]) == 0
    unpacked = vitrust.load_file(tmp_path / "d.safetensors")
    for name in src:
        np.testing.assert_array_equal(unpacked[name], back[name].to_dense())
