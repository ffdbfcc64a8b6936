#!/usr/bin/env bash
# The one command that runs the test suite on a fresh Debian machine (as root) or an already prepared one:
# installs what the tests need (Debian's Chromium for the browser tests, the CPU build of torch), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -r requirements.txt -r requirements-dev.txt
python -m pytest -q "$@"
