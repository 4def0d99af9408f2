#!/usr/bin/env bash
# The one GPU session behind benchmarks/results/: CUDA tests, the benchmark, and generate's scaling.
# Run from the repository root on a machine with 1 or more CUDA GPUs; OUT is where results go.
# k-diffusion (and torchsde, trampoline) come as wheels in .whl/ when the machine cannot install them.
# shellcheck source=benchmarks/gpu_common.sh
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/session.txt"

# 1. the tests that need a GPU (graphs, streaming), on one card
CUDA_VISIBLE_DEVICES=0 timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_fast.py tests/test_streaming.py \
    -k "graph_replay or fast_float32 or class_labels or streamed_events or host_copies or pinned_staging" 2>&1 | tail -15 | tee -a "$OUT/session.txt"

# 2. the benchmark on one card (memory, D alone, agreement, runs vs k-diffusion, profile, torch.compile trial)
CUDA_VISIBLE_DEVICES=0 timeout "${BENCH_TIMEOUT:-280}" python3 -m explorer.commands.bench --out "$OUT" --stem bench \
    --profile --compile "${COMPILE_BATCHES:-1,16,256}" --time-budget "${COMPILE_BUDGET:-120}" 2>&1 \
    | grep -v -e USDT -e "^\s*$" > "$OUT/bench.log"
tail -n 45 "$OUT/bench.log"

# 3. generate over every GPU of the machine (torchrun, NCCL), same seeds, compared bit for bit
[ -n "${SKIP_SCALING:-}" ] && exit 0
GPUS=$(python3 -c "import torch; n = torch.cuda.device_count(); print(','.join(str(k) for k in (1, n) if k <= n) if n > 1 else '1')")
timeout "${SCALING_TIMEOUT:-120}" python3 benchmarks/generate_scaling.py --model emoji32-edm --seeds 0-8191 --batch 256 \
    --gpus "$GPUS" --out "$OUT/scaling" 2>&1 | tail -n 12
cp "$OUT"/scaling/generate-scaling.* "$OUT"/ 2>/dev/null
rm -rf "$OUT"/scaling
