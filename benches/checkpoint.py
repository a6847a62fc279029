"""Pruning a Llama-shaped bfloat16 checkpoint end to end, here and on Dask.

    python benches/checkpoint.py --layers 42 [--rate 0.5] [--global] [--dir /path/with/room]

Writes a synthetic checkpoint (hidden 2048, intermediate 5632, 4 key-value
heads of 64, vocabulary 32000, `--layers` layers; Gaussian weights, 1 GB
shards, a Hugging Face index JSON and config.json) unless it is there, then
prunes it (each run in a fresh process, so its peak RSS is its own):

- locally, with `prune_checkpoint` (reading, searching and writing overlapped);
- on a `LocalCluster` of 1 worker process, then of 2, one thread each.

It prints end-to-end and search-only weights/s (search-only: the time inside
`vitrust.prune`), peak RSS against the bound 2.5 x the largest tensor in
float32 + 300 MB, output/input size, and the 1 -> 2 worker scaling. About 42
layers make a 4 GB checkpoint (2 G weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HIDDEN, INTER, KV, VOCAB = 2048, 5632, 256, 32000
SHARD = 10**9


def tensors(layers: int):
    """``(name, shape)`` in Hugging Face's order."""
    yield "model.embed_tokens.weight", (VOCAB, HIDDEN)
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)
        yield p + "self_attn.k_proj.weight", (KV, HIDDEN)
        yield p + "self_attn.v_proj.weight", (KV, HIDDEN)
        yield p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)
        yield p + "mlp.gate_proj.weight", (INTER, HIDDEN)
        yield p + "mlp.up_proj.weight", (INTER, HIDDEN)
        yield p + "mlp.down_proj.weight", (HIDDEN, INTER)
        yield p + "input_layernorm.weight", (HIDDEN,)
        yield p + "post_attention_layernorm.weight", (HIDDEN,)
    yield "model.norm.weight", (HIDDEN,)
    yield "lm_head.weight", (VOCAB, HIDDEN)


def _write_shard(path: str, items, rng) -> None:
    """A plain safetensors file written tensor by tensor (header first: shapes are known)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in items:
        n = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name, shape in items:
            scale = 1.0 if len(shape) == 1 else 1 / math.sqrt(shape[1])
            for rows in np.array_split(np.arange(shape[0]), max(1, math.prod(shape) // (1 << 22))):
                x = rng.standard_normal((len(rows),) + tuple(shape[1:]), dtype=np.float32) * scale
                f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())  # bfloat16 by truncation


def write_checkpoint(root: str, layers: int) -> None:
    os.makedirs(root)
    rng = np.random.default_rng(0)
    groups, size = [[]], 0
    for name, shape in tensors(layers):
        n = 2 * math.prod(shape)
        if size and size + n > SHARD:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += n
    wm, total = {}, 0
    for i, items in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        _write_shard(os.path.join(root, fname), items, rng)
        wm.update({n: fname for n, _ in items})
        total += sum(2 * math.prod(s) for _, s in items)
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_hidden_layers": layers, "num_attention_heads": 32,
              "num_key_value_heads": KV // 64, "vocab_size": VOCAB, "torch_dtype": "bfloat16"}
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


CHILD = r"""
import json, resource, sys, time
from vitrust import prune_checkpoint
src, dst, rate, glob, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
client = cluster = None
if workers:
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
t = time.perf_counter()
r = prune_checkpoint(src, dst, rate, global_rate=glob, client=client, force=True)
secs = time.perf_counter() - t
if client is not None:
    client.close(); cluster.close()
print(json.dumps({"seconds": secs, "search": r.search_seconds, "weights": r.weights, "rate": r.achieved_rate,
                  "bytes_in": r.bytes_in, "bytes_out": r.bytes_out, "passes": r.passes,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run(src: str, dst: str, rate: float, glob: bool, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, src, dst, str(rate), str(int(glob)), str(workers)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--global", dest="glob", action="store_true", help="one global lambda")
    ap.add_argument("--dir", default="bench-checkpoint", help="where the checkpoint and outputs go")
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    src = os.path.join(args.dir, f"llama-{args.layers}l")
    if not os.path.exists(src):
        t = time.perf_counter()
        write_checkpoint(src, args.layers)
        print(f"wrote {src} in {time.perf_counter() - t:.0f} s")
    largest = max(4 * math.prod(s) for _, s in tensors(args.layers))
    bound = 2.5 * largest + 300e6
    n = sum(math.prod(s) for _, s in tensors(args.layers))
    print(f"checkpoint: {args.layers} layers, {n / 1e9:.2f} G weights, "
          f"{sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src)) / 1e9:.2f} GB; "
          f"largest tensor {largest / 1e6:.0f} MB in float32; RSS bound {bound / 1e6:.0f} MB")
    runs = [("local", 0)] + ([] if args.no_dask else [("dask, 1 worker", 1), ("dask, 2 workers", 2)])
    print("| run | seconds | end-to-end M w/s | search-only M w/s | e2e/search | peak RSS MB (bound) | out/in |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = {}
    for label, workers in runs:
        dst = os.path.join(args.dir, f"out-{workers}")
        shutil.rmtree(dst, ignore_errors=True)
        r = results[workers] = run(src, dst, args.rate, args.glob, workers)
        # The workers search side by side: their summed search time over their count.
        search = r["weights"] / (r["search"] / max(workers, 1)) / 1e6
        e2e = r["weights"] / r["seconds"] / 1e6
        rss = "n/a (workers)" if workers else f"{r['rss'] / 1e6:.0f} ({bound / 1e6:.0f})"
        print(f"| {label} | {r['seconds']:.1f} | {e2e:.1f} | {search:.1f} | {e2e / search:.2f} | {rss} | "
              f"{r['bytes_out'] / r['bytes_in']:.3f} |")
        shutil.rmtree(dst, ignore_errors=True)
    if 1 in results and 2 in results:
        print(f"1 -> 2 workers: {results[1]['seconds'] / results[2]['seconds']:.2f}x; "
              f"per worker {results[1]['weights'] / results[1]['seconds'] / 1e6:.1f} M weights/s")
    print(f"achieved rate {results[0]['rate']:.2%}" + (f", {results[0]['passes']:.2f} search passes" if args.glob else ""))


if __name__ == "__main__":
    main()
