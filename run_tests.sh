#!/usr/bin/env bash
# Set up ceers-nircam and run its test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh
python -m pytest "$@"
