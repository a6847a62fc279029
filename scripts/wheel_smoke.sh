#!/usr/bin/env bash
# Smoke test of a built wheel: install it into a fresh virtual environment
# (nothing but the wheel and its own dependencies) and use it as a new user
# would: prune, save, load, the command line. Usage:
#   scripts/wheel_smoke.sh [WHEEL]    (without WHEEL: `maturin build --release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wheel=${1:-}
if [ -z "$wheel" ]; then
    maturin build --release --out "$work/dist"
    wheel=$(ls "$work"/dist/vitrust-*.whl)
fi
case "$(basename "$wheel")" in
    *-abi3-*) ;;
    *) echo "wheel_smoke: $wheel is not an abi3 wheel" >&2; exit 1 ;;
esac

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
cd "$work"  # away from the checkout, so only the installed package can be imported
"$work/venv/bin/python" - <<'PY'
import os, numpy as np, vitrust
assert "site-packages" in vitrust.__file__, vitrust.__file__
pkg = os.path.dirname(vitrust.__file__)
assert os.path.isfile(os.path.join(pkg, "py.typed")) and os.path.isfile(os.path.join(pkg, "_vitrust.pyi"))
w = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
sp = vitrust.prune(w, 0.9)
assert abs(sp.rate - 0.9) < 0.002 and sp.bits_per_weight <= 0.2 + 1e-3
assert np.array_equal(sp.to_dense()[sp.mask()], w[sp.mask()])
vitrust.save_file({"w": sp, "b": np.arange(3.0)}, "m.safetensors")
back = vitrust.load_file("m.safetensors")
assert np.array_equal(back["w"].index, sp.index) and np.array_equal(back["w"].values, sp.values)
print("wheel smoke: import, prune, save/load ok;", repr(sp))
PY
"$work/venv/bin/vitrust" info m.safetensors
"$work/venv/bin/vitrust" unpack m.safetensors -o dense.safetensors
"$work/venv/bin/python" -m vitrust demo --rate 0.9 > demo.txt
grep -q "achieved rate" demo.txt
echo "wheel smoke: $(basename "$wheel") ok"
