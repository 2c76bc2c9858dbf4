#!/usr/bin/env bash
# GPU readiness in one run (docs/performance.md, "On a GPU"): on a CUDA machine, from the repository root,
#
#   bash docs/runners/gpu_check.sh            # about 10 minutes on one GPU
#
# 1. `bench` of both training loops at the paper's width (64), float32 and bfloat16 autocast, eager and
#    compiled (torch.compile with CUDA graphs, the `compile` param);
# 2. the shared stage for 2,000 iterations on real-sized rendered Shapes3D (480,000 images, 24,000 pairs)
#    at the paper's width, through the stage commands `dvc repro` runs;
# 3. the held-out wide probe on that S (test pairs never trained on), as the evaluate stage computes it.
#
# --tiny runs the same steps at toy sizes on the CPU (no compiled bench: the trainer refuses compile on
# CPUs), so a test keeps this script working on machines without a GPU. Work files go to a temporary
# folder (DISMI_GPU_CHECK_DIR to keep them), never into the repository's data/ or models/.
set -euo pipefail
cd "$(dirname "$0")/../.."

tiny=false
[ "${1:-}" = "--tiny" ] && tiny=true
work="${DISMI_GPU_CHECK_DIR:-$(mktemp -d)}"
mkdir -p "$work"

if $tiny; then
  width=4 dim=8 bench_args="--iters 2 --rounds 1 --warmup 1 --device cpu"
  overrides="synthetic_grid=small n_pairs=400 width=4 shared_dim=8 iters_sh=20 log_every=10 probe_epochs=1 device=cpu"
  variants=("--fp32" "")
else
  width=64 dim=64 bench_args="--iters 50 --rounds 3 --warmup 5 --device cuda"
  overrides="synthetic_grid=full n_pairs=24000 width=64 shared_dim=64 iters_sh=2000 log_every=250 device=cuda"
  variants=("--fp32" "" "--fp32 --compile" "--compile")
  python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
fi

echo "== 1. bench, width $width"
for v in "${variants[@]}"; do
  echo "-- bench $v"
  # shellcheck disable=SC2086
  python -m stages bench --width "$width" --dim "$dim" $bench_args $v
done

echo "== 2. shared stage on rendered Shapes3D ($overrides)"
# shellcheck disable=SC2086
python - "$work/params.yaml" $overrides <<'EOF'
import sys

import yaml

params = yaml.safe_load(open("params.yaml"))
for item in sys.argv[2:]:
    key, value = item.split("=", 1)
    params[key] = yaml.safe_load(value)
params.update(snapshot_every=0, checkpoint_every=params["iters_sh"], dataset="synthetic")
yaml.safe_dump(params, open(sys.argv[1], "w"))
EOF
start=$(date +%s)
python -m stages download --out "$work/shapes3d.h5" --params "$work/params.yaml"
python -m stages pairs --data "$work/shapes3d.h5" --out "$work/pairs.h5" --params "$work/params.yaml"
echo "rendering and pairs: $(( $(date +%s) - start )) s"
start=$(date +%s)
python -m stages train-shared --pairs "$work/pairs.h5" --model "$work/shared.pt" --live "$work/live_shared" \
  --checkpoints "$work/checkpoints" --params "$work/params.yaml"
echo "shared stage: $(( $(date +%s) - start )) s"

echo "== 3. held-out wide probe on S"
python - "$work" <<'EOF'
import sys
from pathlib import Path

import yaml

from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, TRAIN, load_pairs
from dismi.eval.metrics import Codes, EvalSettings, wide_probe_metric
from dismi.model.networks import encode
from dismi.train.modelfile import load_model

work = Path(sys.argv[1])
p = yaml.safe_load((work / "params.yaml").read_text())
device = "cuda" if p["device"] == "cuda" else "cpu"
data = load_pairs(work / "pairs.h5")
encoder, _ = load_model(work / "shared.pt", device)
codes = encode(encoder, data.images, device=device)  # (M, shared_dim)
train, test = data.image_rows(TRAIN), data.image_rows(TEST)
c = Codes("shared", codes[train], data.classes[train], codes[test], data.classes[test], tuple(data.n_values()))
keys = ("seed", "probe_epochs", "probe_lr", "probe_batch_size", "retrieval_k", "retrieval_queries")
acc = wide_probe_metric(c, EvalSettings(**{k: p[k] for k in keys}, device=device))
print("held-out wide probe on S: " + ", ".join(f"{f} {100 * acc[f]:.1f}%" for f in FACTORS))
print(f"distance to ideal (S): {acc['distance_to_ideal']:.4f}")
EOF
