"""vitrust: Viterbi-based pruning with a fixed, tiny index cost per weight.

``prune(weights, rate)`` keeps the weights a Viterbi decompressor (VD) can
describe with ``1 / ratio`` index bits per weight, choosing among them by an
exact trellis search; the result, a :class:`ViterbiSparse`, expands back to a
mask or a dense array in parallel.
"""

from ._vitrust import FormatError, VDConfig, default_comparator, generate_taps
from ._prune import RateWarning, expand, prune
from ._sparse import ViterbiSparse
from ._values import EncodedValues
from ._format import load_file, read_metadata, save_file
from ._checkpoint import prune_checkpoint
from ._quality import Quality, rd_bound
from ._storage import StorageTable, index_cost
from ._vitrust import default_threads

__version__ = "0.1.0"

__all__ = [
    "EncodedValues",
    "FormatError",
    "RateWarning",
    "VDConfig",
    "ViterbiSparse",
    "default_comparator",
    "expand",
    "generate_taps",
    "prune",
    "Quality",
    "StorageTable",
    "index_cost",
    "load_file",
    "prune_checkpoint",
    "rd_bound",
    "read_metadata",
    "save_file",
    "default_threads",
    "__version__",
]
