#!/usr/bin/env bash
# GPU batch E (one H100 call, after report_full.sh): GeLoRA's preprocessing share on a gpu-profile run of
# standard size — SST-2 with the profile's 20,000 training examples (1,875 steps), seed 0, GeLoRA then LoRA,
# one process at a time on a quiet GPU. Usage: bash scripts/gpu/suite_e.sh
#   (seed 0, GeLoRA first); SEED=1 METHODS="lora gelora" bash scripts/gpu/suite_e.sh (seed 1, LoRA first)
source scripts/gpu/common.sh
for method in ${METHODS:-gelora lora}; do
  python3 -m validation.commands.validate glue --tasks sst2 --methods "$method" --seeds "${SEED:-0}," --profile gpu \
    --device cuda --out reports/gpu/grid-sst2-20k 2>&1 | grep -v -i "warn\|Loading weights" | tail -2
done
rm -rf reports/gpu/grid-sst2-20k/work
tar -czf "$OUT/suite_e.tgz" reports/gpu/grid-sst2-20k
