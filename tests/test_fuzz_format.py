"""Bounded fuzzing of the loader: valid files with bit flips, truncation,
overwritten or appended bytes, a bad length prefix, or edited header fields.
Each must load as exactly the original data or raise ``vitrust.FormatError``
(a ``ValueError``) naming the damage; never crash, hang or load as something
else; and reading the metadata alone must behave the same way. Forged edits (the metadata check recomputed)
may load, but only as valid, self-consistent tensors. (``benches/fuzz_format.py`` runs this for minutes.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vitrust
from encoded import save_encoded
from fuzzing import consistent, mutate, same, sample_tensors, sample_tensors_v2


@pytest.fixture(scope="module", params=["v1", "v2", "v3"])
def original(request, tmp_path_factory):
    # A version 1 file, a version 2 one (per-block thresholds, order F) and
    # a version 3 one (the same with encoded values).
    path = tmp_path_factory.mktemp("fuzz") / "orig.safetensors"
    if request.param == "v3":
        save_encoded(sample_tensors_v2(), {"a": "int4", "b": "codebook3"}, path)
    else:
        vitrust.save_file(sample_tensors() if request.param == "v1" else sample_tensors_v2(), path)
    return path.read_bytes(), vitrust.load_file(path)


def _metadata_loads_or_is_refused(path):
    try:
        meta = vitrust.read_metadata(path)
    except vitrust.FormatError as e:
        assert str(e)
    else:
        assert isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())


@settings(max_examples=400)
@given(data=st.data())
def test_damaged_files_never_load_as_other_data(original, tmp_path_factory, data):
    buf, loaded = original
    damaged, forged = mutate(buf, lambda lo, hi: data.draw(st.integers(lo, hi)))
    path = tmp_path_factory.mktemp("case") / "f.safetensors"
    path.write_bytes(damaged)
    try:
        got = vitrust.load_file(path)
    except vitrust.FormatError as e:
        # Refused as a bad file, with a reason, and only when something changed.
        assert damaged != buf and str(e)
        _metadata_loads_or_is_refused(path)
        return
    assert isinstance(vitrust.read_metadata(path), dict)  # a file that loads has readable metadata
    if forged:  # an edit with a recomputed check may load, but only as valid tensors
        assert consistent(got)
    else:
        assert same(got, loaded), "a damaged file loaded as different data"
