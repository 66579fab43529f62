#!/usr/bin/env bash
# The GPU benchmark of the worker's model path (bench/gpu.py), on a machine that has torch, numpy and
# sentence-transformers but none of the service's other dependencies: the service itself is not run.
# Needs .gpu/ from `.venv/bin/python bench/gpu_prep.py`. Writes $OUT/gpu.log (everything printed) and
# $OUT/gpu.json (the figures); OUT defaults to bench/results. Extra arguments go to bench/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [[ ! -d .gpu/model || ! -f .gpu/texts.txt ]]; then
    echo "bench/gpu.sh: .gpu/model or .gpu/texts.txt missing: run .venv/bin/python bench/gpu_prep.py and carry .gpu" >&2
    exit 2
fi
{
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs"
    nvidia-smi -L || echo "nvidia-smi: not available"
    "$PYTHON" -c 'import sys, torch, numpy, transformers, sentence_transformers as st
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"sentence-transformers {st.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}")
print(f"cuda available {torch.cuda.is_available()}, devices {torch.cuda.device_count()}")'
    echo "== the model path only (encode core + quality gate); Celery, PostgreSQL and Redis are not on this machine"
    "$PYTHON" bench/gpu.py --out "$OUT/gpu.json" "$@"
} 2>&1 | tee "$OUT/gpu.log"
