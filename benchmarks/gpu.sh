#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one command (a machine with CUDA and this repo installed):
#   bash benchmarks/gpu.sh [OUT_DIR]
# float32 and bfloat16, batch 1 and 8, eager and torch.compile, plus the drift of bfloat16 on the GPU.
set -euo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
for dtype in float32 bfloat16; do
  unils bench --device cuda --dtype "$dtype" --seconds 10 60 --batch 1 8 --straightforward-max-seconds 10 \
    --json "$out/gpu_${dtype}.json"
  unils bench --device cuda --dtype "$dtype" --seconds 60 --batch 8 --fast-only --compile \
    --json "$out/gpu_${dtype}_compiled.json"
done
unils bench --device cuda --seconds 10 --fast-only --drift bfloat16 --json "$out/gpu_drift.json"
