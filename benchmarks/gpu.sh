#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one command (a machine with CUDA and this repo importable):
#   bash benchmarks/gpu.sh [OUT_DIR]
# Defaults (auto precision = bfloat16 on GPUs) for one conversation and a batch of 32, then live sessions
# at hop 25 and hop 10 stepped in turn vs in one batched step (SessionGroup), and grouped-vs-alone drift.
set -uo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
timeout 180 unils bench --device cuda --seconds 20 60 --batch 1 32 --fast-only --json "$out/gpu_defaults.json"
timeout 240 python benchmarks/session_load.py --size large --device cuda --hops 25 --modes group \
  --sessions 1 16 64 256 512 --ticks 6 --warmup 2 --equality --json "$out/gpu_sessions_hop25.json"
timeout 120 python benchmarks/session_load.py --size large --device cuda --hops 25 10 --modes turn \
  --sessions 1 16 --ticks 4 --warmup 1 --json "$out/gpu_sessions_turn.json"
timeout 150 python benchmarks/session_load.py --size large --device cuda --hops 10 --modes group \
  --sessions 1 64 256 --ticks 6 --warmup 2 --json "$out/gpu_sessions_hop10.json"
