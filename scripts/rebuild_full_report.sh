#!/usr/bin/env bash
# Rebuild reports/full from the committed GPU run directories, on a CPU machine (project venv active,
# GELORA_DATA_DIR set): re-collect the sections that read run directories (grid, trajectories, ablations),
# then assemble the report, reusing every other section from reports/full/raw/. The run directories are
# listed once, in scripts/report_runs.sh. Afterwards `gelora report --from reports/full/report.json --out
# reports/full` re-renders the same bytes (tests/unit/validation/report/test_reading_order.py). Last, the
# README's C4 table (between its markers) is rewritten from the new report.json
# (tests/unit/validation/report/test_evidence.py checks the two agree).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/report_runs.sh
py="${PYTHON:-python}"  # the project's interpreter (its venv active, or PYTHON=.venv/bin/python)
"$py" -m gelora.cli report --profile full --out reports/full "${REPORT_RUN_ARGS[@]}" --sections grid,trajectories,ablations --force
"$py" -m gelora.cli report --profile full --out reports/full "${REPORT_RUN_ARGS[@]}" "${REPORT_PROFILE_ARGS[@]}"
"$py" -m validation.report.evidence reports/full/report.json --write README.md
