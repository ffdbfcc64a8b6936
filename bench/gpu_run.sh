#!/usr/bin/env bash
# The GPU benchmark of issue 11, item 6 (bench/bench_gpu.py), as the one prepared run on a lent device machine
# (/work/.library/device/README.md: one H200, 15 minutes of device time in all, the machine's start included; nothing
# can be downloaded there, and at most 64 MiB travels with the working tree).
#
# 1. Here, once per checkout: fetches the wheels that must travel into bench/.cache/gpu (ignored by git) and checks
#    that the working tree and they fit in 64 MiB:
#        bench/gpu_run.sh prepare
# 2. Then exactly one call of the device tool `run`:
#        command:   bash bench/gpu_run.sh
#        carry:     ["bench/.cache/gpu"]
#        timeout_s: 540
#    The run takes about 8 minutes (the bench stops starting levels after 390 s and is killed at 470 s), so with the
#    machine's start there is no time for a second one: call `give_back` right after it.
# 3. What comes back, under the reply's files_at: bench_gpu.json (every level measured, rewritten after each one),
#    bench_gpu.log (the whole output, the table last) and nvidia-smi.txt. `python bench/bench_gpu.py table
#    <files_at>/bench_gpu.json` prints the table again; BENCHMARKS.md ("GPU (issue 11, item 6)") is where it goes.
#
# Arguments after the command go to `bench_gpu.py run` (e.g. `--sizes 1.7b`, `--tokens 200`).
#
# On the device: its image has PyTorch for CUDA, tokenizers, safetensors, huggingface_hub, numpy and psutil, but
# transformers 5.17 (KINDS.md), and the project needs 5.23 or later: transformers travels as a wheel, with the regex
# it requires (the image's version is not on record). qasr_space.audio imports PyAV and soxr, which the image lacks
# and which the bench never calls (it passes arrays), so empty stand-ins are made for them. The real-size random
# checkpoints (0.6B ASR and the aligner, 1.5-2 GB each in bf16) are built there, in /tmp.

set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=bench/.cache/gpu
LIMIT_BYTES=$((64 * 1024 * 1024))

prepare() {
    local transformers_version regex_version bytes
    transformers_version=$(python3 -c "import transformers; print(transformers.__version__)")
    regex_version=$(python3 -c "import regex; print(regex.__version__)")
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "transformers==$transformers_version" "regex==$regex_version"
    ls -l "$WHEELS"
    bytes=$( { git ls-files -z --cached --others --exclude-standard; find "$WHEELS" -type f -print0; } \
             | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    echo "travels: $((bytes / 1024)) KiB of the $((LIMIT_BYTES / 1024)) KiB allowed"
    if ((bytes > LIMIT_BYTES)); then
        echo "over the limit: ignore or remove what should not travel (git status --short lists it)" >&2
        exit 1
    fi
}

device_run() {
    : "${OUT:?run this on the device machine, through the device tool, as the header says}"
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    mkdir -p /tmp/stand-ins/av /tmp/stand-ins/soxr
    touch /tmp/stand-ins/av/__init__.py /tmp/stand-ins/soxr/__init__.py
    export PYTHONPATH=/tmp/site:/tmp/stand-ins PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__,
        'transformers', transformers.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    local status=0
    timeout 470 python3 bench/bench_gpu.py run --out "$OUT/bench_gpu.json" --model-dir /tmp/qasr-models \
        --deadline 390 "$@" 2>&1 | tee "$OUT/bench_gpu.log" || status=$?
    if ((status != 0)) && [[ -s "$OUT/bench_gpu.json" ]]; then
        echo "bench_gpu.py stopped (exit $status); what it measured:"
        python3 bench/bench_gpu.py table "$OUT/bench_gpu.json" 2>&1 | tee -a "$OUT/bench_gpu.log"
    fi
    return "$status"
}

if [[ "${1:-}" == prepare ]]; then
    prepare
else
    device_run "$@"
fi
