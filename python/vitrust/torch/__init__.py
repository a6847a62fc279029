"""PyTorch integration: a ``torch.nn.utils.prune`` method, model-wide pruning,
and export to / loading from vitrust safetensors files and checkpoints.

``import vitrust`` never imports torch; ``import vitrust.torch`` does (install
it with ``pip install 'vitrust[torch]'``).

- :class:`ViterbiUnstructured` and :func:`viterbi_unstructured` work like
  ``torch.nn.utils.prune.l1_unstructured``: the module gets ``name_orig``
  (a parameter), ``name_mask`` (a buffer) and a forward pre-hook, and
  ``prune.remove`` makes the pruning permanent; ``amount`` counts the weights
  still unpruned, as in torch.
- :func:`prune_model` prunes every weight of two or more dimensions, with one
  multiplier λ across layers (global pruning, calibrated on samples) or
  per-layer rates.
- :func:`export` writes the pruned model to a vitrust file (pruned weights as
  index plus kept values, everything else dense); :func:`load` puts such a
  file, a sharded checkpoint or a model directory back into a model, and
  :func:`from_pretrained` builds a ``transformers`` model from a directory.
  ``export(..., values="codebook4")`` stores the kept values encoded.
- :func:`share_centroids` ties each pruned weight to one of ``2**B`` shared
  centroids and lets fine-tuning train the centroids (each one's gradient
  the sum of its weights', as Deep Compression does); export stores them
  exactly, and :func:`load` gives the decoded weights.

Dtypes: the search needs only scores, so it always runs on float32 copies of
float16 and bfloat16 parameters (exact for both); stored values keep float16,
float32 and float64; bfloat16 values are stored as bfloat16 where this
version of vitrust stores them, else as float32 (exact). Loading casts back
to each parameter's dtype. 0-d tensors (BatchNorm's ``num_batches_tracked``)
stay 0-d.
"""

from __future__ import annotations

from ._centroids import SharedCentroids, share_centroids
from ._convert import to_numpy, to_torch
from ._export import export, sparse_of as _sparse_of, state_tensors, state_tensors_names
from ._load import checkpoint_files, from_pretrained, load
from ._pruning import ViterbiUnstructured, attached as _method, viterbi_unstructured
from ._model import global_lam, global_search, layer_config, prunable_layers, prune_model

__all__ = [
    "ViterbiUnstructured",
    "viterbi_unstructured",
    "prune_model",
    "share_centroids",
    "SharedCentroids",
    "prunable_layers",
    "export",
    "load",
    "from_pretrained",
    "to_numpy",
]
