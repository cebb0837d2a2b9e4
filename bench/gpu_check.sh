#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, at most 8 minutes, findings under OUTDIR.
#
#   bash bench/gpu_check.sh OUTDIR
#
# Runs bench/gpu_check.py (tests marked cuda, CycleGAN step time and peak memory at 64/128 px in
# fp32 and bf16, the CNN's images/s, a short `pipeline run all` of the demo with device = "cuda")
# and writes OUTDIR/findings.json and OUTDIR/findings.md, part by part. Self-contained on a bare
# machine with a copy of the working tree and a carried .venv: the code is imported from src/
# (PYTHONPATH), nothing is installed or downloaded. Without a CUDA device it says so and exits 0.
set -u
OUT=${1:?usage: bench/gpu_check.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here (or torch not importable with $PYTHON); nothing measured"
    echo '{"cuda": false, "note": "no CUDA device; nothing measured"}' > "$OUT/findings.json"
    exit 0
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
# 8 minutes in all: the Python part plans for 450 s, the timeout is the backstop.
timeout --signal=INT --kill-after=20 470 "$PYTHON" "$ROOT/bench/gpu_check.py" --out "$OUT" --device cuda --budget-s 450
status=$?
echo "gpu_check: exit $status; findings: $OUT/findings.md"
cat "$OUT/findings.md" 2>/dev/null
exit $status
