#!/usr/bin/env bash
# Install (first run only) and run the main job on embedded defaults: the quick-profile reproducibility
# report on CPU (bundled pretrained encoder, real GLUE data from ../shared/data, synthetic manifolds).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/setup_env.sh"
cd "$root"
gelora report --profile quick --out reports/quick "$@"
