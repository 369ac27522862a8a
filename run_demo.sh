#!/usr/bin/env bash
# Set up ceers-nircam and run the reduction on the built-in demo data.
# Usage: bash run_demo.sh [OUTDIR]   (default: demo_output)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh
python -m ceers_nircam.demo "${1:-demo_output}"
