#!/usr/bin/env bash
# GPU batch D (one H100 call): LoRA and GeLoRA at 4x the gpu profile's learning rate (2e-3 instead of 5e-4;
# AdaLoRA's own default factor is 10) on STS-B, MRPC, RTE and SST-2 (4000 training examples), 3 seeds, as
# concurrent single-cell processes sharing the GPU. Tests whether the LoRA-vs-GeLoRA comparison and GeLoRA's
# STS-B failure depend on the learning rate. Writes reports/gpu/grid-lr4 and grid-sst2-lr4.
# Usage: BUDGET_S=480 bash scripts/gpu/suite_d.sh
# (Since 2026-11-23 afternoon a call of the general sweep script suite_g.sh, which the original loop here
# became; the committed grid-lr4 cells were produced by that loop with the same cells and profile.)
TAG=lr4 METHODS="lora gelora" LRM="lora=4 gelora=4" exec bash "$(dirname "$0")/suite_g.sh"
