# Sourced by the GPU session scripts (gpu_session.sh, gpu_whole_steps.sh): strict-ish shell, the output folder,
# unbuffered Python, and the carried wheels (.whl/: k-diffusion, torchsde, trampoline) on PYTHONPATH.
set -uo pipefail
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
