#!/usr/bin/env bash
# The GPU goals of sherlock-gpu-check (benchmarks/results/gpu_check.md), on one GPU, in one go.
#
#   1. here, once, with the network (the package index): the wheels the GPU machine lacks,
#      into .whl/ (add `.whl/` to .git/info/exclude; about 20 MB)
#        bash benchmarks/gpu_check_h200.sh wheels
#   2. on the GPU machine (nothing is fetched there): install them with pip --target, then
#      measure the paper preset's Llama-3.2-11B-Vision at real size with random weights
#        bash benchmarks/gpu_check_h200.sh run OUT_DIR [PRESET ...]
#      (default preset: config/presets/paper_llama32v.yaml); it writes, per preset, the log and
#      every figure as JSON, plus the device and the versions, under OUT_DIR.
#
# The machine this was written for has Python 3.12, torch 2.11 (CUDA 13), transformers 5.17 and
# none of TRL, LLaMA-Factory or datasets. The wheels bring our training stack's pins (the
# pyproject's `train` extra) except torch: transformers 5.6.0 and tokenizers 0.22.2 (the
# measured code is the code the presets run), TRL (the trainer's arguments and log-softmax),
# LLaMA-Factory with what its model utilities import (the freezing rules), peft and accelerate.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    transformers==5.6.0 tokenizers==0.22.2 trl==0.24.0 peft==0.18.1 accelerate==1.11.0
    llamafactory==0.9.5 datasets==4.0.0 dill==0.3.8 multiprocess==0.70.16 pytz==2026.6
)

case "${1:-}" in
wheels)
    platforms=()
    for n in 2_28 2_27 2_17; do platforms+=(--platform "manylinux_${n}_x86_64"); done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    du -sh .whl
    ;;
run)
    out=${2:?"usage: $0 run OUT_DIR [PRESET ...]"}
    shift 2
    presets=("$@")
    [ ${#presets[@]} -gt 0 ] || presets=(config/presets/paper_llama32v.yaml)
    mkdir -p "$out"
    ls .whl/*.whl >/dev/null  # the wheels travel with the working tree (step 1)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 DISABLE_VERSION_CHECK=1 \
        HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
        python3 -c "import sys, torch, transformers, trl, llamafactory; \
print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', \
torch.version.cuda); print('transformers', transformers.__version__); \
print('trl', trl.__version__); print('llamafactory', llamafactory.__version__)"
        git log -1 --format='commit %H'
    } > "$out/device.txt" 2>&1
    cat "$out/device.txt"
    for preset in "${presets[@]}"; do
        name=$(basename "$preset" .yaml)
        # A failing environment check (DeepSpeed is not on that machine) exits 1 after the
        # figures are written: keep going.
        python3 -m sherlock.gpucheck.cli --configfile "$preset" --output "$out/$name.json" \
            2>&1 | tee "$out/$name.log" || true
    done
    ;;
*)
    sed -n 2,18p "$0"
    exit 2
    ;;
esac
