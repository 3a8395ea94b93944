"""The fine-tuning suite: a grid of cells (task x method x seed), each trained and scored by the runner.

grid.py           plans, runs, resumes and summarises a grid of cells
runner.py         one cell: Profile, model, method at the common budget, Trainer, result file
tasks/            task families (GLUE, SQuAD): data, collation, metric and post-processing per task
methods.py        LoRA, AdaLoRA, GeLoRA, full fine-tuning (and GeoLoRA via geolora/) at one budget
metrics.py        the official GLUE and SQuAD metrics
lr_sensitivity.py merges grids run at several learning rates
geolora/          the GeoLoRA baseline (adapter layer, integrator, runner integration, bench, probe)
"""
