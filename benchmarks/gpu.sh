#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one command (a machine with CUDA and this repo importable):
#   bash benchmarks/gpu.sh [OUT_DIR]
# Live sessions of the full-size model at hop 25 stepped in one batched step (SessionGroup) and in turn,
# the defaults (auto precision = bfloat16 on GPUs) for one conversation, hop 10, and a batch of 32.
# Each part has its own time limit and the session benchmarks write their JSON as they go.
# First the steps recorded as CUDA graphs (--cuda-graphs): their tests (when pytest is importable), one
# live session's step latency, two-person conversations batched, and offline 20 s / 60 s.
set -uo pipefail
out=${1:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if $py -c "import pytest" 2>/dev/null; then
  timeout 120 $py -m pytest -q -m gpu tests/test_graphs.py -p no:cacheprovider
fi
timeout 60 $py benchmarks/session_load.py --size large --device cuda --hops 25 10 --modes group \
  --sessions 1 --ticks 20 --warmup 3 --cuda-graphs --json "$out/gpu_sessions_single_graphs.json"
timeout 150 $py benchmarks/session_load.py --size large --device cuda --hops 25 --modes group --both \
  --sessions 16 64 192 256 384 --ticks 5 --warmup 2 --cuda-graphs --json "$out/gpu_sessions_hop25_both_graphs.json"
timeout 90 $py -m unils bench --device cuda --seconds 20 60 --batch 1 --fast-only --cuda-graphs \
  --json "$out/gpu_defaults_graphs.json"
timeout 150 $py benchmarks/session_load.py --size large --device cuda --hops 25 --modes group \
  --sessions 1 16 64 256 512 --ticks 5 --warmup 2 --equality --json "$out/gpu_sessions_hop25.json"
timeout 60 $py -m unils bench --device cuda --seconds 20 60 --batch 1 --fast-only --json "$out/gpu_defaults.json"
timeout 60 $py benchmarks/session_load.py --size large --device cuda --hops 25 --modes turn \
  --sessions 1 16 --ticks 3 --warmup 1 --json "$out/gpu_sessions_turn.json"
timeout 70 $py benchmarks/session_load.py --size large --device cuda --hops 10 --modes group \
  --sessions 1 64 256 --ticks 5 --warmup 2 --json "$out/gpu_sessions_hop10.json"
timeout 60 $py -m unils bench --device cuda --seconds 20 --batch 32 --fast-only --json "$out/gpu_batch32.json"
