#!/usr/bin/env bash
# Live grounding on one GPU (H100/H200), side by side: the reference computation vs sharing.
#
# Builds Qwen2.5-VL-7B (bf16; the rollout recomputes attention in fp32) and SAM2.1-hiera-large
# (fp32) from their published configs (decaf_ros/core/models/<family>/configs.py) with random weights, then
# runs bench/bench_live.py on a 16-frame 640x480 clip and prints goal -> coarse and goal -> dense
# latency with sharing off and on, the work ratios, tracking frames/s and peak GPU memory.
# Random weights make answers and masks meaningless; the amount of work is the real one.
#
# Needs only python3 with torch, transformers, numpy, pillow and opencv (no hub, no install, no
# ROS): the package is imported from this working tree through PYTHONPATH.
#
#   bench/gpu_live.sh                  # on the GPU machine; --json defaults to gpu_live.json
#   bench/gpu_live.sh --json $OUT/gpu_live.json
#   bench/gpu_live.sh --smoke          # a CPU-sized check of the same path (tests run this)
#
# Environment: PYTHON (default python3), DECAF_GPU_LIVE_TIMEOUT (seconds, default 300: the run must
# fit in 5 minutes), DECAF_GPU_LIVE_TRACK_FRAMES (default 60), DECAF_GPU_LIVE_POINT_THRESHOLD
# (SAM2 click threshold; default the reference 0.8 — random weights may make F flat enough for
# very many clicks, each a SAM2 object tracked over the key frames).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# The ROS wheels' re-exec guard must not leak into a plain python.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

if [[ "${1:-}" == "--smoke" ]]; then
  shift
  exec "$PY" "$ROOT/bench/bench_live.py" --smoke --device cpu --track-frames 2 "$@"
fi

"$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_live.sh needs a CUDA GPU (torch.cuda.is_available() is False); use --smoke on a CPU")
print(f"... {torch.cuda.get_device_name(0)}, torch {torch.__version__}", file=sys.stderr)
EOF

json="gpu_live.json"
for arg in "$@"; do [[ "$arg" == --json ]] && json=""; done
exec timeout --signal=INT "${DECAF_GPU_LIVE_TIMEOUT:-300}" "$PY" "$ROOT/bench/bench_live.py" \
  --mllm qwen2.5-vl-7b --sam2 sam2.1-hiera-large --device cuda --dtype bfloat16 \
  --frames 16 --key-frames 16 --size 640x480 \
  --track-frames "${DECAF_GPU_LIVE_TRACK_FRAMES:-60}" ${json:+--json "$json"} \
  ${DECAF_GPU_LIVE_POINT_THRESHOLD:+--point-threshold "$DECAF_GPU_LIVE_POINT_THRESHOLD"} "$@"
