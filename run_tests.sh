#!/usr/bin/env bash
# Set up ceers-nircam and run its test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh
# Two test workers, one per core; each part of the suite (tests/conftest.py) stays on one of them.
# Give -n 0 to run in this process, e.g. to debug one test.
python -m pytest -n 2 --dist loadscope --no-loadscope-reorder "$@"
