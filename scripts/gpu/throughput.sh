#!/usr/bin/env bash
# Grid throughput against workers per GPU (issue 23), ONE device call of ~7 minutes: 12 short cells of the
# bundled MiniLM (SST-2 and RTE, lora and gelora, 3 seeds; gpu profile cut to 1024 training examples and one
# epoch) with 1, 4, 6 and 8 workers on GPU 0, and 8 workers over GPUs 0,1 when two are visible.
# Writes $OUT/throughput.json and $OUT/throughput.md. Needs .devcarry/ (scripts/gpu/make_carry.sh).
# Usage (GPU machine): BUDGET_S=400 bash scripts/gpu/throughput.sh
source scripts/gpu/common.sh
python3 scripts/gpu/throughput.py --out "$OUT" --budget-s "${BUDGET_S:-400}" --cap-s "${CAP_S:-110}" "$@"
