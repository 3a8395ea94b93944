#!/usr/bin/env bash
# Install (first run only) and run the default test suite: unit, end-to-end and theory tests.
# Slow tests: tox -e slow; benchmarks: tox -e bench; lint: tox -e lint.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
export GELORA_CACHE_DIR="${GELORA_CACHE_DIR:-$root/.cache/gelora}"
python -m pytest tests/unit tests/e2e tests/theory -q -ra --durations=15 "$@"
