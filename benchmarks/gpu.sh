#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one command (a machine with CUDA and this repo importable):
#   bash benchmarks/gpu.sh [OUT_DIR]
# Live sessions of the full-size model at hop 25 stepped in one batched step (SessionGroup) and in turn,
# the defaults (auto precision = bfloat16 on GPUs) for one conversation, hop 10, and a batch of 32.
# Each part has its own time limit and the session benchmarks write their JSON as they go.
set -uo pipefail
out=${1:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
timeout 150 $py benchmarks/session_load.py --size large --device cuda --hops 25 --modes group \
  --sessions 1 16 64 256 512 --ticks 5 --warmup 2 --equality --json "$out/gpu_sessions_hop25.json"
timeout 60 $py -m unils bench --device cuda --seconds 20 60 --batch 1 --fast-only --json "$out/gpu_defaults.json"
timeout 60 $py benchmarks/session_load.py --size large --device cuda --hops 25 --modes turn \
  --sessions 1 16 --ticks 3 --warmup 1 --json "$out/gpu_sessions_turn.json"
timeout 70 $py benchmarks/session_load.py --size large --device cuda --hops 10 --modes group \
  --sessions 1 64 256 --ticks 5 --warmup 2 --json "$out/gpu_sessions_hop10.json"
timeout 60 $py -m unils bench --device cuda --seconds 20 --batch 32 --fast-only --json "$out/gpu_batch32.json"
