#!/usr/bin/env bash
# GPU batch A: kNN core vs matmul, GeLoRA preprocessing cost, estimator cross-comparison on real hidden
# states, ID drift during fine-tuning. Writes JSON under $OUT. Usage (GPU machine): bash scripts/gpu/suite_a.sh
source scripts/gpu/common.sh
step() { echo "=== $1 ($(date +%T))"; }
step knn;  python3 -m validation.estimators.gpu_bench --device cuda --n 65536 --D 4096 --k 20 --repeats 3 --json "$OUT/knn_h100.json" 2>&1 | tail -5
step ranks_bench
python3 -m validation.estimators.ranks_bench --models bundled,config:bert-L24-H1024 --device cuda --dtype bf16 --task stsb \
  --finetune-steps 20 --out "$OUT/ranks_bench_h100.json" 2>&1 | grep -v Warning | tail -8
step timing16k
python3 - <<'PY' 2>&1 | grep -v -i "warn\|knn_without"
import json, os, time, torch
from gelora.estimators import estimate_id
from gelora.hidden_states import collect_hidden_states
from gelora.models import load_model
from validation.data.glue import load_glue
texts = load_glue("stsb", "train").joined_texts()
lm = load_model(None, device="cuda")
hs = collect_hidden_states(lm.model, lm.tokenizer, texts, max_tokens=16000, seed=0)
params = {"twonn": {}, "mle": {"k": 20}, "danco": {"k": 10}}
res = {}
for rep in range(2):  # rep 0 may calibrate DANCo; rep 1 is warm
    for m, p in params.items():
        torch.cuda.synchronize(); t = time.perf_counter()
        for X in hs.layers:
            estimate_id(X, method=m, device="cuda", duplicates="dedupe", **p)
        torch.cuda.synchronize(); res[f"rep{rep}/{m}"] = time.perf_counter() - t
res["warm_total_s"] = sum(v for k, v in res.items() if k.startswith("rep1/"))
res["n_rows"], res["n_layers"] = hs.n_samples, len(hs.layers)
print(res); json.dump(res, open(os.environ["OUT"] + "/estimation_16k_h100.json", "w"), indent=1)
import cProfile, pstats
cProfile.run('estimate_id(hs.layers[3], method="mle", device="cuda", duplicates="dedupe", k=20)', "/tmp/p")
pstats.Stats("/tmp/p").sort_stats("cumtime").print_stats(8)
cProfile.run('estimate_id(hs.layers[3], method="danco", device="cuda", duplicates="dedupe", k=10)', "/tmp/q")
pstats.Stats("/tmp/q").sort_stats("tottime").print_stats(8)
PY
step drift
timeout 200 python3 -m validation.estimators.id_drift --tasks rte,stsb --seeds 0 --profile gpu --device cuda --checkpoints 4 \
  --max-tokens 4000 --run-dir /tmp/drift --out "$OUT/id_drift_h100.json" 2>&1 | grep -v -i "warn\|knn_without" | tail -6
step crosscompare
timeout 330 python3 -m validation.estimators.crosscompare --task stsb --sizes 1000,4000,16000,64000 --samplings all,first,mean \
  --seeds 0,1,2 --device cuda --out "$OUT/crosscompare_h100.json" 2>&1 | grep -v -i "warn\|knn_without" | tail -40
step done
