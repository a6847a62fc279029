"""Type stubs for the compiled core ``vitrust._vitrust``."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

# _Encoded kept values: (encoding, group (0 for a codebook), count, packed codes, float32 table).
_Encoded = Tuple[str, int, int, npt.NDArray[np.uint8], npt.NDArray[np.float32]]
# _Kept values as expansion and the products take them: an array, or encoded with the
# values' safetensors dtype name.
_Kept = Union[npt.NDArray[Any], Tuple[_Encoded, Optional[str]]]

DEFAULT_MAX_SEARCH_BYTES: int
MAX_BLOCK_STEPS: int
MAX_THREADS: int
MAX_FLIP_FLOPS: int
MAX_N_IN: int
MAX_N_OUT: int
MAX_COMPARATOR_BITS: int
MAX_BLOCK_THRESHOLD: int
MAX_TAPS: int
MAX_DIMS: int

class FormatError(ValueError):
    """A file (or bytes claiming to be one) that is damaged, truncated or hostile."""

class VDConfig:
    """A Viterbi decompressor: ``flip_flops`` state bits, ``n_in`` input bits and
    ``n_out`` keep bits per step, each keep bit comparing ``comparator_bits``
    XOR outputs with ``threshold`` (docs/format.md, "The Viterbi decompressor").

    One step with state ``s`` and input ``u``: ``r = (s << n_in) | u``; gate
    ``g`` outputs the parity of ``r & taps[g]``; output ``j`` reads gates
    ``j * comparator_bits ..`` as a little-endian number and keeps its weight
    when that number is below ``threshold``; the new state is the low
    ``flip_flops`` bits of ``r``. ``taps`` (``n_out * comparator_bits`` non-zero
    masks below ``2**(flip_flops + n_in)``) are given, or generated from
    ``seed``. Immutable, comparable and hashable.
    """

    def __init__(
        self,
        flip_flops: int = 10,
        n_in: int = 1,
        n_out: int = 5,
        comparator_bits: int = 1,
        threshold: int = 1,
        taps: Optional[List[int]] = None,
        seed: int = 0,
    ) -> None: ...
    @property
    def flip_flops(self) -> int:
        """State bits of the shift register (``2**flip_flops`` trellis states)."""
    @property
    def n_in(self) -> int:
        """Index bits read per step."""
    @property
    def n_out(self) -> int:
        """Keep bits (weights) emitted per step."""
    @property
    def comparator_bits(self) -> int:
        """XOR outputs each keep bit compares with ``threshold``."""
    @property
    def threshold(self) -> int:
        """A weight is kept when its comparator reads below this (1 ..= 2**comparator_bits)."""
    @property
    def taps(self) -> List[int]:
        """The ``n_out * comparator_bits`` XOR gates' tap masks over ``(state << n_in) | input``."""
    @property
    def ratio(self) -> float:
        """Index compression ratio ``n_out / n_in``: weights per index bit."""
    @property
    def keep_fraction(self) -> float:
        """Share of weights a random input keeps: ``threshold / 2**comparator_bits``."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def search(
    config: VDConfig,
    weights: npt.NDArray[Any],
    score: str,
    lam: float,
    block_steps: int,
    threads: Optional[int] = None,
    max_bytes: int = ...,
    simd: Optional[str] = None,
    factors: Optional[Sequence[float]] = None,
    refine: bool = False,
    metrics: str = "auto",
) -> Tuple[npt.NDArray[np.uint64], int, float, Optional[npt.NDArray[np.uint8]]]: ...
def integer_blocks(
    config: VDConfig,
    weights: npt.NDArray[Any],
    score: str,
    lam: float,
    block_steps: int,
    threads: Optional[int] = None,
) -> Tuple[int, int]: ...
def search_rate(
    config: VDConfig,
    weights: npt.NDArray[Any],
    score: str,
    rate: float,
    block_steps: int,
    threads: Optional[int] = None,
    max_bytes: int = ...,
    factors: Optional[Sequence[float]] = None,
    refine: bool = False,
) -> Tuple[npt.NDArray[np.uint64], int, float, float, Optional[npt.NDArray[np.uint8]]]: ...
def expand(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    n_weights: int,
    block_steps: int,
    threads: Optional[int] = None,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
    transpose: Optional[Tuple[int, int]] = None,
) -> npt.NDArray[np.bool_]: ...
def block_starts(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    n_weights: int,
    block_steps: int,
    threads: Optional[int] = None,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
) -> npt.NDArray[np.uint64]: ...
# Value arrays (`npt.NDArray[Any]`): float16/32/64, or ml_dtypes' bfloat16,
# float8_e4m3fn and float8_e5m2 (read as their bit patterns, results in the same dtype).
def gather(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    block_steps: int,
    weights: npt.NDArray[Any],
    threads: Optional[int] = None,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
) -> Tuple[npt.NDArray[Any], npt.NDArray[np.uint64]]: ...
def scatter(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    block_steps: int,
    values: _Kept,
    n_weights: int,
    threads: Optional[int] = None,
    starts: Optional[npt.NDArray[np.uint64]] = None,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
    transpose: Optional[Tuple[int, int]] = None,
) -> npt.NDArray[Any]: ...
def transposed(a: npt.NDArray[Any], rows: int, cols: int, threads: Optional[int] = None) -> npt.NDArray[Any]: ...
def matmul(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    block_steps: int,
    values: _Kept,
    n_weights: int,
    rows: int,
    x: npt.NDArray[Any],
    batch: int,
    threads: Optional[int] = None,
    starts: Optional[npt.NDArray[np.uint64]] = None,
    left: bool = False,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
) -> npt.NDArray[np.floating]: ...
def simd_levels() -> List[str]: ...
def layout_info(config: VDConfig, n_weights: int, block_steps: int) -> Tuple[int, int, int]: ...
def generate_taps(flip_flops: int, n_in: int, n_out: int, comparator_bits: int, seed: int) -> List[int]: ...
def default_comparator(rate: float) -> Tuple[int, int]: ...

FORMAT_VERSION: int  # the newest version read (and written when a file needs it)
FORMAT_VERSION_1: int
MAX_GROUP: int  # the largest group of an integer value encoding

def save_file(
    path: str,
    plain: List[Tuple[str, str, List[int], npt.NDArray[np.uint8]]],
    # (name, dtype, shape, value bytes or (encoding, group, nnz, codes, float32 table), config, block_steps, lam,
    #  index, thresholds or None, order)
    sparse: List[
        Tuple[
            str,
            str,
            List[int],
            Union[npt.NDArray[np.uint8], _Encoded],
            VDConfig,
            int,
            float,
            npt.NDArray[np.uint64],
            Optional[npt.NDArray[np.uint8]],
            str,
        ]
    ],
    metadata: Dict[str, str],
    threads: Optional[int] = None,
) -> None: ...
def load_file(
    path: str, threads: Optional[int] = None
) -> Tuple[
    List[Tuple[str, str, List[int], npt.NDArray[Any]]],
    List[
        Tuple[
            str,
            str,
            List[int],
            Union[npt.NDArray[Any], _Encoded],
            VDConfig,
            int,
            float,
            npt.NDArray[np.uint64],
            Optional[npt.NDArray[np.uint8]],
            str,
        ]
    ],
]: ...
def read_metadata(path: str) -> Dict[str, str]: ...
def encode_values(
    values: npt.NDArray[Any],
    encoding: str,
    group: int = 128,
    weights: Optional[npt.NDArray[np.float32]] = None,
    threads: Optional[int] = None,
) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]: ...
def decode_values(values: _Kept, threads: Optional[int] = None) -> npt.NDArray[Any]: ...
def check_values(values: _Kept) -> None: ...
def index_cost(
    mask: npt.NDArray[np.bool_],
    rows: int,
    fmt: str,
    n_out: Optional[int] = None,
    n_in: int = 1,
    bits: Optional[int] = None,
) -> Tuple[int, int]: ...
def index_costs(
    config: VDConfig,
    index: npt.NDArray[np.uint64],
    n_weights: int,
    block_steps: int,
    rows: int,
    formats: List[str],
    threads: Optional[int] = None,
    thresholds: Optional[npt.NDArray[np.uint8]] = None,
) -> List[Tuple[int, int]]: ...
def default_threads() -> int: ...

class SafeOpen:
    """A safetensors file opened by memory mapping (validated when opened)."""

    def __init__(self, path: str) -> None: ...
    @property
    def path(self) -> str:
        """The path the file was opened from."""
    def keys(self) -> List[str]: ...
    def metadata(self) -> Dict[str, str]: ...
    def info(self, name: str) -> Tuple[str, str, List[int], int]: ...
    def get(self, name: str) -> Any: ...
    def prefetch(self, name: str) -> None: ...
    def release(self, name: str) -> None: ...

class ShardWriter:
    """Writes one safetensors file tensor by tensor; ``finish`` makes it appear."""

    def __init__(self, path: str, metadata: Dict[str, str], plan: List[Tuple[str, str, List[int], int]]) -> None: ...
    def add_plain(self, name: str, dtype_name: str, shape: List[int], data: npt.NDArray[np.uint8]) -> None: ...
    def add_sparse(
        self,
        name: str,
        dtype_name: str,
        shape: List[int],
        values: Union[npt.NDArray[np.uint8], _Encoded],
        config: VDConfig,
        block_steps: int,
        lam: float,
        index: npt.NDArray[np.uint64],
        thresholds: Optional[npt.NDArray[np.uint8]] = None,
        order: str = "C",
    ) -> None: ...
    def finish(self) -> Tuple[int, List[str]]: ...
    def abort(self) -> None: ...
