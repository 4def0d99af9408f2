#!/usr/bin/env bash
# Issue #14's GPU rows: whole-step CUDA graphs against NFE × graph-replayed D, streaming with recording,
# and float32 at batch 256 compiled against k-diffusion. Run from the repository root on one H200;
# OUT is where results go. k-diffusion (torchsde, trampoline) come as wheels in .whl/ as in gpu_session.sh.
# shellcheck source=benchmarks/gpu_common.sh
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/whole-steps-session.txt"

# 1. the CUDA tests of the fast path, whole-step graphs included (they skip on a CPU)
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_step_graphs.py tests/test_fast.py \
    tests/test_streaming.py 2>&1 | tail -15 | tee -a "$OUT/whole-steps-session.txt"

# 2. the benchmark: rows with and without whole-step graphs, streaming off/on, float32 and bf16;
#    torch.compile tried in float32 at batch 256 (the float32 ≥ 2× k-diffusion target)
CUDA_VISIBLE_DEVICES=0 timeout "${BENCH_TIMEOUT:-400}" python3 -m explorer.commands.bench --out "$OUT" \
    --stem bench-h200-whole-steps --batches 1,16,256 \
    --solvers heun:18,euler:18,dpm-solver++2m:10,dpm-solver-2m:10,dpm-solver-3:4 --precisions float32,bfloat16 \
    --memory-batch 0 --compile 256 --compile-precision float32 --time-budget 150 2>&1 \
    | grep -v -e USDT -e "^\s*$" > "$OUT/bench-h200-whole-steps.log"
tail -n 60 "$OUT/bench-h200-whole-steps.log"
