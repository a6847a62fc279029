"""``ViterbiSparse``: a pruned tensor held as its VD index and kept values."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np

from . import _checks, _vitrust
from ._vitrust import VDConfig

if TYPE_CHECKING:
    from ._quality import Quality


class ViterbiSparse:
    """A pruned tensor: shape, VD config, block layout, index and kept values.

    ``index`` is one ``uint64`` array (block ``b`` starts at word
    ``b * ceil(block_steps * n_in / 64)``); ``values`` holds the kept weights in
    C order and the original dtype (float16/32/64, or ml_dtypes' bfloat16,
    float8_e4m3fn, float8_e5m2). Nothing dense is stored. The index's layout
    is in docs/format.md ("Blocks", "Index layout").
    """

    __slots__ = ("shape", "config", "block_steps", "index", "values", "lam", "_threads", "_starts")
    # NumPy operators defer to this class (so `X @ sp` reaches __rmatmul__
    # instead of densifying `sp`); np.asarray(sp) still gives the dense array.
    __array_ufunc__ = None

    def __init__(
        self,
        shape: Tuple[int, ...],
        config: VDConfig,
        block_steps: int,
        index: Any,
        values: Any,
        lam: float,
        *,
        threads: Optional[int] = None,
    ) -> None:
        self._set(shape, config, block_steps, index, lam, threads)
        self.values = _checks.flat(_checks.float_array(values, "values"))
        self._starts = None
        n_blocks, index_len, _ = _vitrust.layout_info(config, self.size, self.block_steps)
        if len(self.index) != index_len:
            raise ValueError(f"index has {len(self.index)} words; this shape and config need {index_len}")
        self._starts = self._block_starts()
        nnz = int(self._starts[-1])
        if nnz != len(self.values):
            raise ValueError(f"values has {len(self.values)} entries but the index keeps {nnz} weights")

    @classmethod
    def _from_core(
        cls,
        shape: Tuple[int, ...],
        config: VDConfig,
        block_steps: int,
        index: Any,
        values: np.ndarray,
        lam: float,
        *,
        threads: Optional[int] = None,
        starts: Optional[np.ndarray] = None,
    ) -> "ViterbiSparse":
        """A tensor from results the core made consistent (a search, a file it
        validated): ``values`` is taken as it is (flat, a value dtype, one per
        kept weight) and the index is not expanded again. ``starts``, where
        each block's values start, may come along from the core's gather."""
        sp = cls.__new__(cls)
        sp._set(shape, config, block_steps, index, lam, threads)
        sp.values = values
        # Where each block's values start (`n_blocks + 1` entries): derived by
        # expanding, kept so that to_dense and products skip that pass. The
        # core checks them block by block, so a stale copy only costs time.
        sp._starts = starts
        return sp

    def _set(self, shape: Tuple[int, ...], config: VDConfig, block_steps: int, index: Any, lam: float,
             threads: Optional[int]) -> None:
        """The checks and fields both constructors share (all but the values)."""
        if not isinstance(config, VDConfig):
            raise TypeError(f"config: expected a vitrust.VDConfig, got {type(config).__name__}")
        shape = tuple(_checks.integer(d, "shape", 0) for d in shape)
        if not shape or math.prod(shape) == 0:
            raise ValueError(f"shape {shape}: need at least one dimension and one weight")
        if math.prod(shape) > _checks.SIZE_MAX:
            raise ValueError(f"shape {shape}: {math.prod(shape)} weights are more than this machine can address")
        self.shape = shape
        self.config = config
        self.block_steps = _checks.integer(block_steps, "block_steps", 1, _vitrust.MAX_BLOCK_STEPS)
        self.index = _checks.index_array(index)
        self.lam = _checks.real(lam, "lam")
        self._threads = _checks.threads(threads)

    def _block_starts(self) -> np.ndarray:
        if self._starts is None:
            self._starts = _vitrust.block_starts(self.config, self.index, self.size, self.block_steps, self._threads)
        return self._starts

    # -- figures ---------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        """The values' dtype: the pruned tensor's own."""
        return self.values.dtype

    @property
    def size(self) -> int:
        """Number of weights (dense elements)."""
        return math.prod(self.shape)

    @property
    def nnz(self) -> int:
        """Number of kept weights."""
        return len(self.values)

    @property
    def rate(self) -> float:
        """Achieved pruning rate: the share of weights pruned."""
        return 1.0 - self.nnz / self.size

    @property
    def index_bits(self) -> int:
        """Exact index cost in bits: the sum over blocks of ``steps * n_in``."""
        return _vitrust.layout_info(self.config, self.size, self.block_steps)[2]

    @property
    def bits_per_weight(self) -> float:
        """Index bits per weight (dense element): about ``1 / ratio``."""
        return self.index_bits / self.size

    # -- expansion ---------------------------------------------------------------
    def mask(self, *, threads: Optional[int] = None) -> np.ndarray:
        """The keep-mask, a bool array of the weights' shape."""
        t = _checks.threads(threads) or self._threads
        return _vitrust.expand(self.config, self.index, self.size, self.block_steps, t).reshape(self.shape)

    def to_dense(self, *, threads: Optional[int] = None) -> np.ndarray:
        """The pruned tensor as a dense array: kept values in place, zeros elsewhere."""
        t = _checks.threads(threads) or self._threads
        dense = _vitrust.scatter(self.config, self.index, self.block_steps, self.values, self.size, t, self._block_starts())
        return dense.reshape(self.shape)

    def __matmul__(self, other: Any) -> Any:
        """``W @ X`` from the index and values, never forming the dense ``W``.

        ``W`` is this tensor viewed as ``(shape[0], rest)``; ``X`` is a vector of
        ``rest`` elements or a ``(rest, batch)`` matrix. Computed in float64 if
        either side is float64, else float32 (float16, bfloat16 and float8
        values are widened exactly as they are read); each output row is summed in C
        order, so the result does not depend on the thread count. A 1-D tensor
        is one row ``(1, N)`` whose 1 is dropped from the result, as NumPy does
        for a 1-D operand: ``w @ x`` is a scalar, ``w @ X`` has shape ``(batch,)``.
        """
        return self._product(other, left=False)

    def __rmatmul__(self, other: Any) -> Any:
        """``X @ W`` from the index and values, never forming the dense ``W``.

        ``X`` is a vector of ``shape[0]`` elements or a ``(batch, shape[0])``
        matrix; the result has ``rest`` columns. Rows of ``W`` are summed in up
        to eight fixed groups, then the groups in order, so the result does not
        depend on the thread count. For a 1-D ``w`` (NumPy: a column on the
        right) ``x @ w`` is a scalar and ``X @ w`` has shape ``(batch,)``,
        computed as ``w @ X.T`` on the row.
        """
        return self._product(other, left=True)

    def _product(self, other: Any, left: bool) -> np.ndarray:
        x = _checks.native(np.asarray(other))
        if _checks.value_dtype(x.dtype) is None and x.dtype.kind not in "iub":
            raise TypeError(f"operand: expected a real numeric array, got {x.dtype}")
        rows, cols = _checks.matrix_view(self.shape)
        vector = len(self.shape) == 1
        if vector:
            want = f"({cols},), ({cols}, batch) on the right or (batch, {cols}) on the left"
            if left:
                # NumPy takes a 1-D right operand as a column: X @ w has the sums of w @ X.T.
                left, x = False, x.T
        else:
            want = f"({rows},) or (batch, {rows})" if left else f"({cols},) or ({cols}, batch)"
        inner = rows if left else cols
        if x.ndim not in (1, 2) or x.shape[-1 if left else 0] != inner:
            raise ValueError(f"operand: shape {x.shape} does not match; this tensor multiplies {want}")
        if x.size == 0:
            raise ValueError("operand: the batch is empty")
        dtype = np.float64 if np.float64 in (x.dtype, self.dtype) else np.float32
        xs = np.ascontiguousarray(x, dtype=dtype)
        if not np.isfinite(xs).all():
            raise ValueError("operand: values must be finite")
        batch = 1 if x.ndim == 1 else x.shape[0 if left else 1]
        y = _vitrust.matmul(
            self.config, self.index, self.block_steps, self.values, self.size, rows, xs.reshape(-1), batch, self._threads,
            self._block_starts(), left,
        )
        if vector:  # the row's 1 dropped: a scalar, or (batch,)
            return y[0] if x.ndim == 1 else y
        if x.ndim == 1:
            return y
        return y.reshape(batch, cols) if left else y.reshape(rows, batch)

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a ViterbiSparse cannot be viewed as a dense array without a copy")
        dense = self.to_dense()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def quality(self, weights_or_scores: Any, *, score: str = "abs") -> "Quality":
        """How good this mask is for ``weights_or_scores`` (of the pruned tensor's shape).

        Returns a :class:`vitrust.Quality`: ``retained`` (sum of kept scores over
        the top-``nnz`` scores), ``bound`` (:func:`vitrust.rd_bound` at this
        density and index cost), ``efficiency`` (their ratio) and
        ``top_pruned`` (share of the top-``nnz`` scores that were pruned).
        Scores are ``|x|`` (``score="abs"``) or ``x**2`` (``"square"``); pass
        non-negative importance scores as they are with the default.
        """
        from ._quality import quality, scores_of

        s = scores_of(weights_or_scores, score, "weights_or_scores")
        shape = np.shape(weights_or_scores)
        if tuple(shape) != self.shape:
            raise ValueError(f"weights_or_scores: shape {tuple(shape)} differs from the pruned shape {self.shape}")
        return quality(self.mask().reshape(-1), s, self.bits_per_weight)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ViterbiSparse(shape={self.shape}, dtype={self.dtype}, nnz={self.nnz}, "
            f"rate={self.rate:.4f}, index={self.bits_per_weight:.4f} bit/weight, lam={self.lam:.6g}, "
            f"flip_flops={c.flip_flops}, n_in={c.n_in}, n_out={c.n_out}, "
            f"comparator={c.threshold}/{2 ** c.comparator_bits})"
        )

    # -- storage and interop -------------------------------------------------------
    def storage(self, relative_bits: Any = (4, 5)) -> Any:
        """Index bits, bits per weight and total bytes of this tensor under each
        index format (vitrust, bitmask, CSR, relative, entropy): a
        ``StorageTable`` (a dict that prints as a table)."""
        from ._storage import storage

        return storage(self, relative_bits)

    def astype(self, dtype: Any) -> "ViterbiSparse":
        """A copy with the values cast to ``dtype`` (float16/32/64, or ml_dtypes'
        bfloat16, float8_e4m3fn, float8_e5m2). A cast that would overflow a
        finite value (to infinity, or to NaN in float8_e4m3fn) is refused."""
        dt = np.dtype(dtype)
        if _checks.value_dtype(dt) is None:
            raise TypeError(f"astype: expected {_checks.VALUE_NAMES}, got {dt}")
        with np.errstate(over="ignore", invalid="ignore"):
            values = _checks.native(self.values.astype(dt))
        if not np.isfinite(values).all() and np.isfinite(self.values).all():
            big = float(np.abs(self.values).max())
            raise ValueError(f"astype({dt}): a value of magnitude {big:g} overflows {dt}")
        return ViterbiSparse._from_core(
            self.shape, self.config, self.block_steps, self.index.copy(), values, self.lam,
            threads=self._threads, starts=self._starts,
        )

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.csr_array`` of the 2-D view ``(shape[0], rest)``
        (one row for a 1-D tensor). Needs scipy. float16, bfloat16 and float8
        values become float32 (exactly), since scipy's sparse kernels have none
        of those types."""
        try:
            from scipy.sparse import csr_array
        except ImportError:
            raise ImportError("ViterbiSparse.to_scipy() needs scipy: pip install scipy") from None
        rows, cols = _checks.matrix_view(self.shape)
        pos = np.flatnonzero(self.mask())
        itype = np.int32 if max(self.size, self.nnz) < 2**31 else np.int64
        indices = (pos % cols).astype(itype)
        indptr = np.zeros(rows + 1, dtype=itype)
        np.cumsum(np.bincount(pos // cols, minlength=rows), out=indptr[1:])
        wide = self.dtype.itemsize < 4
        data = self.values.astype(np.float32) if wide else self.values.copy()
        return csr_array((data, indices, indptr), shape=(rows, cols))

    def __reduce__(self) -> Any:
        # Rebuilt through __init__, so an unpickled object is validated again.
        return (ViterbiSparse, (self.shape, self.config, self.block_steps, self.index, self.values, self.lam))
