"""Integer and array arguments at their edges: out-of-range integers are a
ValueError naming the argument (never a bare OverflowError), bools and bytes
are not integers, and big-endian arrays are converted wherever arrays go in."""

import pickle

import numpy as np
import pytest

import vitrust
from reference import stream_order

W = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32)
CFG = vitrust.VDConfig(4, 1, 5, 1, 1)
SP = vitrust.prune(W, 0.5)


def _sparse(shape):
    return vitrust.ViterbiSparse(shape, SP.config, SP.block_steps, SP.index, SP.values, SP.lam)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: vitrust.prune(W, 0.5, max_memory=2**64), "max_memory"),
        (lambda: vitrust.prune(W, 0.5, seed=-1), "seed"),
        (lambda: vitrust.prune(W, 0.5, seed=2**64), "seed"),
        (lambda: vitrust.prune(W, 0.5, ratio=2**64), "ratio"),
        (lambda: vitrust.prune(W, 0.5, comparator_bits=2**64, threshold=1), "comparator_bits"),
        (lambda: vitrust.prune(W, 0.5, comparator_bits=3, threshold=2**64), "threshold"),
        (lambda: vitrust.prune(W, 0.5, tap_seeds=2**64), "tap_seeds"),
        (lambda: vitrust.expand(CFG, np.zeros(1, np.uint64), n_weights=2**64), "n_weights"),
        (lambda: vitrust.expand(CFG, np.zeros(1, np.uint64), 10, block_steps=2**64), "block_steps"),
        (lambda: vitrust.VDConfig(flip_flops=2**63), "flip_flops"),
        (lambda: vitrust.VDConfig(flip_flops=2**64), "flip_flops"),
        (lambda: vitrust.VDConfig(n_in=2**40), "n_in"),
        (lambda: vitrust.VDConfig(n_out=-(2**70)), "n_out"),
        (lambda: vitrust.VDConfig(comparator_bits=2**64), "comparator_bits"),
        (lambda: vitrust.VDConfig(threshold=2**32), "threshold"),
        (lambda: vitrust.VDConfig(2, 1, 1, 1, 1, taps=[2**64]), r"taps\[0\]"),
        (lambda: vitrust.VDConfig(2, 1, 1, 1, 1, taps=[1, -(2**64)]), r"taps\[1\]"),
        (lambda: vitrust.VDConfig(seed=-1), "seed"),
        (lambda: vitrust.VDConfig(seed=2**64), "seed"),
        (lambda: vitrust.generate_taps(10, 1, 5, 1, -1), "seed"),
        (lambda: vitrust.generate_taps(2**64, 1, 5, 1, 0), "flip_flops"),
        (lambda: _sparse((2**64,)), "shape"),
        (lambda: _sparse((2**32, 2**32)), "shape"),
        (lambda: SP.mask(threads=2**64), "threads"),
        (lambda: vitrust.load_file("x.safetensors", threads=2**64), "threads"),
        (lambda: vitrust.index_cost(SP.mask(), "relative", bits=2**64), "bits"),
        (lambda: vitrust.rd_bound(W, 0.5, 0.2, bins=2**64), "bins"),
    ],
)
def test_out_of_range_integers_are_value_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_pickled_objects_with_huge_fields_are_value_errors():
    """Unpickling rebuilds through the constructors, so a tampered pickle is
    refused by name rather than overflowing."""
    fn, args = SP.__reduce__()
    with pytest.raises(ValueError, match="shape"):
        fn((2**64,), *args[1:])
    cfn, cargs = SP.config.__reduce__()
    with pytest.raises(ValueError, match="flip_flops"):
        cfn(2**64, *cargs[1:])
    with pytest.raises(ValueError, match=r"taps\[0\]"):
        cfn(*cargs[:5], [2**64])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(flip_flops=True), "flip_flops: expected an integer, got bool"),
        (dict(n_in=False), "n_in"),
        (dict(seed=True), "seed"),
        (dict(flip_flops=4.0), "flip_flops: expected an integer, got float"),
        (dict(flip_flops="4"), "flip_flops"),
        (dict(taps=b"\x01\x02\x04\x08\x03"), "taps: expected a list of integers, got bytes"),
        (dict(taps=bytearray(b"\x01\x02")), "taps: expected a list of integers, got bytearray"),
        (dict(taps="12345"), "taps: expected a list of integers, got str"),
        (dict(taps=[True, 1, 2, 3, 4]), r"taps\[0\]: expected an integer, got bool"),
        (dict(taps=5), "taps: expected a list of integers, got int"),
    ],
)
def test_bools_bytes_and_non_integers_are_type_errors(kwargs, match):
    base = dict(flip_flops=4, n_in=1, n_out=5, comparator_bits=1, threshold=1)
    with pytest.raises(TypeError, match=match):
        vitrust.VDConfig(**{**base, **kwargs})


def test_integer_like_arguments_still_work():
    a = vitrust.VDConfig(np.int64(4), np.uint8(1), 5, 1, 1, taps=np.array([1, 2, 4, 8, 3], np.int32), seed=2**64 - 1)
    assert a.flip_flops == 4 and a.taps == [1, 2, 4, 8, 3]
    assert vitrust.VDConfig(4, 1, 5, 1, 1, taps=(1, 2, 4, 8, 3)) == a
    assert vitrust.VDConfig(seed=2**64 - 1).taps == vitrust.generate_taps(10, 1, 5, 1, 2**64 - 1)


def _big(a):
    return a.astype(a.dtype.newbyteorder(">"))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_big_endian_arrays_are_converted_everywhere(tmp_path, dtype):
    w = W.astype(dtype)
    big = _big(w)
    assert big.dtype.byteorder == ">"
    sp = vitrust.prune(big, 0.6)
    ref = vitrust.prune(w, 0.6)
    assert np.array_equal(sp.index, ref.index) and sp.values.dtype.isnative
    assert np.array_equal(sp.values, ref.values)
    scored = vitrust.prune(w, 0.6, scores=_big(np.abs(w)))
    assert np.array_equal(scored.index, vitrust.prune(w, 0.6, scores=np.abs(w)).index)
    rebuilt = vitrust.ViterbiSparse(ref.shape, ref.config, ref.block_steps, _big(ref.index), _big(ref.values), ref.lam,
                                    order=ref.order)
    assert rebuilt.values.dtype.isnative and np.array_equal(rebuilt.to_dense(), ref.to_dense())
    assert np.array_equal(vitrust.expand(ref.config, _big(ref.index), ref.size, ref.block_steps), stream_order(ref.mask(), ref.order))
    x = np.random.default_rng(1).standard_normal((30, 3)).astype(dtype)
    np.testing.assert_array_equal(ref @ _big(x), ref @ x)
    x64 = x.astype(np.float64)
    assert (SP @ _big(x64)).dtype == np.float64  # a big-endian float64 operand is still float64
    np.testing.assert_array_equal(SP @ _big(x64), SP @ x64)
    np.testing.assert_array_equal(_big(x64.T[:, :20]) @ SP, x64.T[:, :20] @ SP)
    path = tmp_path / "be.safetensors"
    vitrust.save_file({"w": rebuilt, "p": big}, path)
    back = vitrust.load_file(path)
    assert np.array_equal(back["p"], w) and np.array_equal(back["w"].values, ref.values)
    assert ref.quality(big) == ref.quality(w)
    assert vitrust.rd_bound(big, 0.6, 0.2) == vitrust.rd_bound(w, 0.6, 0.2)
    assert ref.astype(np.dtype(dtype).newbyteorder(">")).values.dtype.isnative
