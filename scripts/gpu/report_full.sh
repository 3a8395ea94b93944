#!/usr/bin/env bash
# The full report on the GPU machine (one H100 call): recompute the model's ID profile there and assemble the
# report from every finished section. The estimator comparison and the theory checks run on a CPU machine
# with scikit-dimension first (the GPU image lacks it); the report reuses them from reports/full/raw/:
#   gelora report --profile full --sections estimators,theory --force --out reports/full   # on CPU
#   bash scripts/gpu/report_full.sh                                                       # on the GPU
source scripts/gpu/common.sh
# recompute on this machine what belongs to it, then the CPU rebuild's two commands (every other section reused)
python3 -m gelora.cli report --profile full --sections model_profile --force --out reports/full 2>&1 | grep "\[report\]"
PYTHON=python3 bash scripts/rebuild_full_report.sh 2>&1 | grep "\[report\]\|wrote"
tar -czf "$OUT/full.tgz" reports/full
