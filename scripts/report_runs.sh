# The run directories reports/full is built from, in order (later directories win where cells repeat).
# Sourced by scripts/rebuild_full_report.sh (which scripts/gpu/report_full.sh runs on the GPU); a test checks that
# the committed report.json was built from exactly this list (tests/unit/scripts/test_report_runs.py).
# Add a directory here when its cells enter the report, then run `bash scripts/rebuild_full_report.sh`.
REPORT_RUNS=(
  reports/gpu/grid
  reports/gpu/grid-sst2
  reports/gpu/grid-adalora
  reports/gpu/grid-sst2-adalora
  reports/gpu/paper-minilm
  reports/gpu/paper-minilm-rates/selected
  reports/gpu/paper-mpnet
  reports/gpu/paper-mpnet-r2
  reports/gpu/paper-minilm-r2
)
REPORT_RUN_ARGS=()
for _d in "${REPORT_RUNS[@]}"; do REPORT_RUN_ARGS+=(--runs "$_d"); done
unset _d
# Further models' per-layer ID profiles (`gelora ranks` JSON files) for claim C3 (`gelora report --id-profiles`):
# MPNet-base on STS-B (H200, reports/gpu/mpnet_h200/README.md) and on RTE (CPU, reports/id_profiles/rte_mpnet/).
REPORT_PROFILE_FILES=(
  reports/gpu/mpnet_h200/ranks_mpnet_twonn.json
  reports/gpu/mpnet_h200/ranks_mpnet_mle.json
  reports/gpu/mpnet_h200/ranks_mpnet_danco.json
  reports/id_profiles/rte_mpnet/ranks_rte_twonn.json
  reports/id_profiles/rte_mpnet/ranks_rte_mle.json
  reports/id_profiles/rte_mpnet/ranks_rte_danco.json
)
REPORT_PROFILE_ARGS=(--id-profiles "${REPORT_PROFILE_FILES[@]}")
