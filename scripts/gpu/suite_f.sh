#!/usr/bin/env bash
# Suite F (issue 3): the NumPy k-NN backend on the GPU machine's 16 cores (16 block threads) against the
# torch backend on CUDA, at n = 16000 on the data of tests/unit/gelora/estimators/test_knn_large.py, plus
# the NumPy backend's wall time with 1, 2, 4, 8 and 16 threads on the benchmark manifold (D = 768).
# Usage (device tool, carry [".devcarry"]): bash scripts/gpu/suite_f.sh   -> $OUT/suite_f.tar.gz
source scripts/gpu/common.sh
python3 -c "import threadpoolctl, numpy, scipy; print('threadpoolctl', threadpoolctl.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)" | tee -a "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/suite_f.log"
import json, os, subprocess, sys, time

import numpy as np

from gelora.estimators import knn_distances

def manifold(n, D, seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(n, 10))
    Y = np.concatenate([np.sin(3 * t), np.cos(2 * t), t**2], axis=1)
    return Y @ rng.normal(size=(30, D)) + 1e-3 * rng.normal(size=(n, D))

out = {"cores": os.cpu_count(), "checks": [], "threads": []}
cases = {
    "manifold-768": manifold(16000, 768, 16768),
    "manifold-64": manifold(16000, 64, 16064),
    "isotropic-768": np.random.default_rng(0).normal(size=(16000, 768)),
}
for name, X in cases.items():
    t0 = time.perf_counter()
    d_np, i_np = knn_distances(X, 20, backend="numpy")
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    d_cu, i_cu = knn_distances(X, 20, device="cuda")
    t_cu = time.perf_counter() - t0
    row = {"case": name, "identical_indices": float((i_np == i_cu).mean()),
           "max_rel_distance_diff": float(np.max(np.abs(d_np - d_cu) / d_cu)),
           "numpy_s": t_np, "cuda_s": t_cu}
    print(row, flush=True)
    out["checks"].append(row)
code = (
    "import sys,time,numpy as np;sys.path.insert(0,'.');"
    "from gelora.estimators import knn_distances;"
    "rng=np.random.default_rng(16768);t=rng.uniform(size=(16000,10));"
    "Y=np.concatenate([np.sin(3*t),np.cos(2*t),t**2],axis=1);"
    "X=Y@rng.normal(size=(30,768))+1e-3*rng.normal(size=(16000,768));"
    "ts=[];[ts.append((lambda s:(knn_distances(X,20,backend='numpy'),time.perf_counter()-s)[1])(time.perf_counter())) for _ in range(3)];"
    "print(min(ts))"
)
for w in (1, 2, 4, 8, 16):
    env = dict(os.environ, OMP_NUM_THREADS=str(w))
    s = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    print({"threads": w, "knn_min_s": s}, flush=True)
    out["threads"].append({"threads": w, "knn_min_s": s})
json.dump(out, open(os.path.join(os.environ["OUT"], "suite_f.json"), "w"), indent=1)
PY
tar -czf "$OUT/suite_f.tar.gz" -C "$OUT" suite_f.log suite_f.json gpu.txt 2>/dev/null
ls -la "$OUT"
