"""Measuring the product, kept apart from it: latency benches and their statistics, device keys, baselines
and the regression compare, camera-pipeline timing, plots, the model studies (sweeps, backend comparison),
runtime overhead and the roofline. Nothing in `edgerestore.runtime` imports this package.

* `stats`: percentiles, interleaved rounds, the ratio-of-medians interval and its verdicts.
* `device`: CPU / runtime description, thread count that ran, device keys, machine load.
* `cases`: sizes, weather frames, `CaseTimer`, `bench_cases`, `bench_restorer`.
* `report`: the `edgerestore-bench/1` report, tables, atomic JSON / CSV.
* `regression`: baselines (paths, validation) and `compare`.
* `pipeline`: camera-pipeline timing (`measure_pipeline`).
* `plots`: latency bars and heatmaps.
* `studies`: benchmarks that start from a model (bundles from a profile, sweeps, backend comparison; torch
  inside the functions that need it).
* `overhead`: what routing costs on top of the graphs it runs, and the memory soak.
* `graph_cost`, `roofline`: FLOPs / bytes from ONNX graphs and the per-graph roofline.

Only `studies` may import torch, and only inside functions.
"""
