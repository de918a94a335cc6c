#!/usr/bin/env bash
# GPU check (run on a machine with CUDA): the gpu-marked tests, then one resnet18 sweep cell.
# Usage: OUT=results-folder FMNIST=folder-with-fashion-mnist-idx bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu_name.txt"
$PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
cat > /tmp/resnet_cell.json <<JSON
{"dataset": "fashion-mnist", "root": "${FMNIST:-/usr/share/datasets/fashion-mnist}",
 "train_size": 2000, "test_size": 1000, "model": "resnet18", "device": "cuda",
 "scenario": {"kind": "backdoor", "size": 100, "target": 0},
 "train": {"epochs": 8, "lr": 0.001, "batch_size": 128},
 "curvature": {"method": "exact", "data": "full"},
 "strategies": [{"name": "saps", "largest": true}, {"name": "random"}],
 "unlearning": {"method": "first_order", "steps": 20, "lr": "auto"},
 "seeds": [0], "fractions": [0.01], "methods": ["first_order"]}
JSON
$PY - <<'PYEOF'
import json
cfg = json.load(open("/tmp/resnet_cell.json"))
for k in ("seeds", "fractions", "methods"):
    cfg.pop(k)
cfg["strategies"] = [{"name": "saps", "fraction": 0.01}, {"name": "random", "fraction": 0.01}]
json.dump(cfg, open("/tmp/resnet_run.json", "w"))
PYEOF
$PY -m core run --config /tmp/resnet_run.json --json --store /tmp/gpu-store > "$OUT/resnet18_run.json" 2> "$OUT/resnet18_run.err"
echo "run rc=$?"; tail -c 1500 "$OUT/resnet18_run.err"
/usr/bin/time -v $PY -m core sweep --config /tmp/resnet_cell.json --json --store /tmp/gpu-store \
  > "$OUT/resnet18_cell.json" 2> "$OUT/resnet18_cell.err"
echo "sweep rc=$?"; tail -25 "$OUT/resnet18_cell.err"
