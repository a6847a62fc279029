"""``ViterbiSparse``: a pruned tensor held as its VD index and kept values."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

import numpy as np

from . import _checks, _values, _vitrust
from ._values import EncodedValues
from ._vitrust import VDConfig

if TYPE_CHECKING:
    from ._quality import Quality


class ViterbiSparse:
    """A pruned tensor: shape, VD config, block layout, index and kept values.

    ``index`` is one ``uint64`` array (block ``b`` starts at word
    ``b * ceil(block_steps * n_in / 64)``); ``values`` gives the kept weights in
    stream order and the original dtype (float16/32/64, or ml_dtypes' bfloat16,
    float8_e4m3fn, float8_e5m2). Nothing dense is stored. The index's layout
    is in docs/format.md ("Blocks", "Index layout").

    The kept values are held as they are, or encoded (``encoded``, an
    :class:`EncodedValues`: ``int8``/``int4`` codes with a scale per group,
    or ``codebook1`` .. ``codebook8`` codes into shared centroids; see
    :meth:`quantize`). Encoded, ``values`` decodes them on each access,
    while ``to_dense``, ``mask`` and the products decode as they go, never
    holding all the decoded values.

    ``order`` is the stream's walk over the 2-D view ``(shape[0], rest)``:
    ``"C"`` (row by row, the flattened C order) or ``"F"`` (column by
    column). ``thresholds`` holds each block's comparator threshold (uint8),
    or is ``None`` when the config's threshold serves every block
    (docs/format.md, "Thresholds per block", "Order").
    """

    __slots__ = ("shape", "config", "block_steps", "index", "_raw", "_encoded", "lam", "thresholds", "order",
                 "_threads", "_starts")
    _raw: Optional[np.ndarray]
    _encoded: Optional[EncodedValues]
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
        thresholds: Any = None,
        order: str = "C",
    ) -> None:
        """``values``: the kept values (an array of a value dtype) or an
        :class:`EncodedValues`, checked against the index either way."""
        self._set(shape, config, block_steps, index, lam, threads, thresholds, order)
        if isinstance(values, EncodedValues):
            self._raw, self._encoded = None, _values.checked(values)
        else:
            self._raw, self._encoded = _checks.flat(_checks.float_array(values, "values", empty_ok=True)), None
        self._starts = None
        n_blocks, index_len, _ = _vitrust.layout_info(config, self.size, self.block_steps)
        if len(self.index) != index_len:
            raise ValueError(f"index has {len(self.index)} words; this shape and config need {index_len}")
        if self.thresholds is not None and len(self.thresholds) != n_blocks:
            raise ValueError(f"thresholds has {len(self.thresholds)} entries; this shape and config have "
                             f"{n_blocks} blocks")
        self._starts = self._block_starts()
        nnz = int(self._starts[-1])
        if nnz != self.nnz:
            raise ValueError(f"values has {self.nnz} entries but the index keeps {nnz} weights")

    @classmethod
    def _from_core(
        cls,
        shape: Tuple[int, ...],
        config: VDConfig,
        block_steps: int,
        index: Any,
        values: Union[np.ndarray, EncodedValues],
        lam: float,
        *,
        threads: Optional[int] = None,
        starts: Optional[np.ndarray] = None,
        thresholds: Optional[np.ndarray] = None,
        order: str = "C",
    ) -> "ViterbiSparse":
        """A tensor from results the core made consistent (a search, a file it
        validated): ``values`` is taken as it is (flat, a value dtype, one per
        kept weight) and the index is not expanded again. ``starts``, where
        each block's values start, may come along from the core's gather."""
        sp = cls.__new__(cls)
        sp._set(shape, config, block_steps, index, lam, threads, thresholds, order)
        if isinstance(values, EncodedValues):
            sp._raw, sp._encoded = None, values
        else:
            sp._raw, sp._encoded = values, None
        # Where each block's values start (`n_blocks + 1` entries): derived by
        # expanding, kept so that to_dense and products skip that pass. The
        # core checks them block by block, so a stale copy only costs time.
        sp._starts = starts
        return sp

    def _set(self, shape: Tuple[int, ...], config: VDConfig, block_steps: int, index: Any, lam: float,
             threads: Optional[int], thresholds: Any, order: str) -> None:
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
        self.thresholds = None if thresholds is None else _checks.thresholds_array(thresholds)
        self.order = _checks.order(order)
        self._threads = _checks.threads(threads)

    def _block_starts(self) -> np.ndarray:
        if self._starts is None:
            self._starts = _vitrust.block_starts(self.config, self.index, self.size, self.block_steps, self._threads,
                                                 self.thresholds)
        return self._starts

    def _transposed(self) -> bool:
        """True when the stream walks the 2-D view column by column (order "F"
        on a view of more than one row and column; otherwise both orders agree)."""
        rows, cols = _checks.matrix_view(self.shape)
        return self.order == "F" and rows > 1 and cols > 1

    def _stream_view(self) -> Tuple[int, int]:
        """The stream as a C-order matrix: the 2-D view, transposed for order "F"."""
        rows, cols = _checks.matrix_view(self.shape)
        return (cols, rows) if self._transposed() else (rows, cols)

    def _transpose(self) -> Optional[Tuple[int, int]]:
        """What the core's expand and scatter take to write C order: the
        stream's matrix ``(rows, cols)`` for order "F", else None (a
        C-contiguous result, not a transposed view, which would surprise
        writers and the buffer protocol)."""
        return self._stream_view() if self._transposed() else None

    def _to_stream(self, a: np.ndarray) -> np.ndarray:
        """An array of this tensor's shape (or 2-D view) flattened in stream order."""
        if self._transposed():
            return np.ascontiguousarray(a.reshape(_checks.matrix_view(self.shape)).T).reshape(-1)
        return a.reshape(-1)

    # -- values ----------------------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """The kept values in stream order and the tensor's dtype (decoded,
        a new array each time, when they are encoded)."""
        if self._encoded is not None:
            return self._encoded.decode(self._threads)
        return self._raw  # type: ignore[return-value]

    @property
    def encoded(self) -> Optional[EncodedValues]:
        """The encoded values, or ``None`` when they are held as they are."""
        return self._encoded

    @property
    def encoding(self) -> str:
        """How the values are held: ``"raw"``, ``"int8"``, ``"int4"`` or ``"codebook1"`` .. ``"codebook8"``."""
        return "raw" if self._encoded is None else self._encoded.encoding

    @property
    def codes(self) -> Optional[np.ndarray]:
        """The packed codes (uint8) of encoded values, else ``None``."""
        return None if self._encoded is None else self._encoded.codes

    @property
    def codebook(self) -> Optional[np.ndarray]:
        """The centroids of ``codebookB`` values, in the table dtype, else ``None``."""
        e = self._encoded
        return e.side_table() if e is not None and e.group is None else None

    @property
    def scales(self) -> Optional[np.ndarray]:
        """The scales of ``int8``/``int4`` values (one per group), in the table dtype, else ``None``."""
        e = self._encoded
        return e.side_table() if e is not None and e.group is not None else None

    def quantize(self, values: str, *, group: int = _values.DEFAULT_GROUP, scores: Any = None,
                 threads: Optional[int] = None) -> "ViterbiSparse":
        """A new tensor with the kept values encoded as ``values``.

        ``"int8"`` and ``"int4"`` store a scale per ``group`` consecutive
        values; ``"codebook1"`` .. ``"codebook8"`` store ``2**B`` centroids
        fitted by k-means weighted by ``scores`` (one per kept value in
        stream order; ``|value|`` without them), so the weights that matter
        fit best. ``"raw"`` gives the values as they are (decoded). Encoded
        values are encoded again from their decoding. float8 values are 8
        bits already and are refused (``TypeError``).
        """
        values, group = _values.encoding_arg(values, group)
        t = _checks.threads(threads) or self._threads
        v = self.values
        held = v if values == "raw" else _values.encode(v, values, group, scores, t)
        return ViterbiSparse._from_core(
            self.shape, self.config, self.block_steps, self.index, held, self.lam,
            threads=self._threads, starts=self._starts, order=self.order, thresholds=self.thresholds,
        )

    def _kept(self) -> Any:
        """The values as the core's expansion and products take them."""
        return self._raw if self._encoded is None else self._encoded.core()

    # -- figures ---------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        """The values' dtype: the pruned tensor's own."""
        return self._raw.dtype if self._encoded is None else self._encoded.dtype  # type: ignore[union-attr]

    @property
    def size(self) -> int:
        """Number of weights (dense elements)."""
        return math.prod(self.shape)

    @property
    def nnz(self) -> int:
        """Number of kept weights."""
        return len(self._raw) if self._encoded is None else self._encoded.size  # type: ignore[arg-type]

    @property
    def rate(self) -> float:
        """Achieved pruning rate: the share of weights pruned."""
        return 1.0 - self.nnz / self.size

    @property
    def index_bits(self) -> int:
        """Exact index cost in bits: the sum over blocks of ``steps * n_in``,
        plus ``comparator_bits`` per block when blocks have their own thresholds."""
        n_blocks, _, bits = _vitrust.layout_info(self.config, self.size, self.block_steps)
        if self.thresholds is not None:
            bits += n_blocks * self.config.comparator_bits
        return int(bits)

    @property
    def bits_per_weight(self) -> float:
        """Index bits per weight (dense element): about ``1 / ratio``."""
        return self.index_bits / self.size

    @property
    def value_bits(self) -> int:
        """Bits of the stored values: raw, or codes plus the side table."""
        if self._encoded is not None:
            return self._encoded.stored_bits
        return 8 * self.nnz * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays: index, per-block thresholds, values (or codes and side table)."""
        th = 0 if self.thresholds is None else self.thresholds.nbytes
        return int(self.index.nbytes + th + self.value_bits // 8)

    @property
    def total_bits(self) -> int:
        """Bits of the whole stored tensor: index (with per-block thresholds) plus values."""
        return self.index_bits + self.value_bits

    # -- expansion ---------------------------------------------------------------
    def mask(self, *, threads: Optional[int] = None) -> np.ndarray:
        """The keep-mask, a bool array of the weights' shape."""
        t = _checks.threads(threads) or self._threads
        mask = _vitrust.expand(self.config, self.index, self.size, self.block_steps, t, self.thresholds,
                               self._transpose())
        return mask.reshape(self.shape)

    def to_dense(self, *, threads: Optional[int] = None) -> np.ndarray:
        """The pruned tensor as a dense array: kept values in place, zeros elsewhere."""
        t = _checks.threads(threads) or self._threads
        dense = _vitrust.scatter(self.config, self.index, self.block_steps, self._kept(), self.size, t,
                                 self._block_starts(), self.thresholds, self._transpose())
        return _values.relabel(dense, self.dtype).reshape(self.shape)

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
        batch = 1 if x.ndim == 1 else x.shape[0 if left else 1]
        # Order "F" streams W.T in C order: W @ X is (X.T @ W.T).T and X @ W
        # is (W.T @ X.T).T, the other product on the stream's matrix.
        flip = self._transposed()
        xs = np.ascontiguousarray(x.T if flip else x, dtype=dtype)
        if not np.isfinite(xs).all():
            raise ValueError("operand: values must be finite")
        core_left = left != flip
        stream_rows, stream_cols = self._stream_view()
        y = _vitrust.matmul(
            self.config, self.index, self.block_steps, self._kept(), self.size, stream_rows, xs.reshape(-1), batch,
            self._threads, self._block_starts(), core_left, self.thresholds,
        )
        if vector:  # the row's 1 dropped: a scalar, or (batch,)
            return y[0] if x.ndim == 1 else y
        if x.ndim == 1:
            return y
        y = y.reshape(batch, stream_cols) if core_left else y.reshape(stream_rows, batch)
        return np.ascontiguousarray(y.T) if flip else y

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
            f"{'' if self._encoded is None else f'values={self.encoding}, '}"
            f"rate={self.rate:.4f}, index={self.bits_per_weight:.4f} bit/weight, lam={self.lam:.6g}, "
            f"flip_flops={c.flip_flops}, n_in={c.n_in}, n_out={c.n_out}, "
            f"comparator={'per block' if self.thresholds is not None else c.threshold}/{2 ** c.comparator_bits}"
            f"{', order=F' if self.order == 'F' else ''})"
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
        bfloat16, float8_e4m3fn, float8_e5m2), held as they are (encoded
        values are decoded first). A cast that would overflow a finite value
        (to infinity, or to NaN in float8_e4m3fn) is refused."""
        dt = np.dtype(dtype)
        if _checks.value_dtype(dt) is None:
            raise TypeError(f"astype: expected {_checks.VALUE_NAMES}, got {dt}")
        old = self.values
        with np.errstate(over="ignore", invalid="ignore"):
            values = _checks.native(old.astype(dt))
        if not np.isfinite(values).all() and np.isfinite(old).all():
            big = float(np.abs(old).max())
            raise ValueError(f"astype({dt}): a value of magnitude {big:g} overflows {dt}")
        return ViterbiSparse._from_core(
            self.shape, self.config, self.block_steps, self.index.copy(), values, self.lam,
            threads=self._threads, starts=self._starts, order=self.order,
            thresholds=None if self.thresholds is None else self.thresholds.copy(),
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
        if self._transposed():  # values are in stream order; CSR takes them row by row
            kept = np.flatnonzero(_vitrust.expand(self.config, self.index, self.size, self.block_steps, self._threads,
                                                  self.thresholds))
            data = data[np.argsort(self._to_stream(np.arange(self.size))[kept])]
        return csr_array((data, indices, indptr), shape=(rows, cols))

    def __reduce__(self) -> Any:
        # Rebuilt through __init__, so an unpickled object is validated again.
        values = self._raw if self._encoded is None else tuple(self._encoded)
        return (_rebuild, (self.shape, self.config, self.block_steps, self.index, values, self.lam,
                           self.thresholds, self.order))


def _rebuild(shape: Tuple[int, ...], config: VDConfig, block_steps: int, index: Any, values: Any, lam: float,
             thresholds: Any = None, order: str = "C") -> ViterbiSparse:
    """Unpickles a tensor through ``__init__``, so it is validated again."""
    if isinstance(values, tuple):
        values = EncodedValues(*values)
    return ViterbiSparse(shape, config, block_steps, index, values, lam, thresholds=thresholds, order=order)
