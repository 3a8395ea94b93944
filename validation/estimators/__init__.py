"""Evidence about the intrinsic-dimension estimators of :mod:`gelora.estimators`.

accuracy.py      our TwoNN / MLE / DANCo and scikit-dimension's against the true ID of benchmark manifolds
crosscompare.py  the estimators against each other on a real model's hidden states
id_drift.py      how layer IDs move during fine-tuning (a Trainer callback)
knn_profile.py   where the exact k-NN spends its time
gpu_bench.py     the tiled k-NN on a GPU
ranks_bench.py   one GeLoRA preprocessing end to end (hidden states -> IDs -> ranks)
bench_ratio.py   pytest-benchmark runs as ratios against peers of the same run
"""
