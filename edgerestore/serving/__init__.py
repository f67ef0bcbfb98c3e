"""Serving many streams on NVIDIA Triton Inference Server.

* `protocol`: the served model's tensors (`frame` in; `image`, `condition`, `confidence`, `restored` out) and
  the one function that turns a batch of frames into those outputs with a `Restorer`.
* `repository`: `edgerestore export-triton` — a standard model repository (one model per graph plus a
  Python-backend BLS model running router -> trunk -> selected branch) for a GPU Triton server.
* `bls`: the Backend the BLS model's `Restorer` runs its graphs through (Triton BLS requests).
* `server`: `edgerestore serve` — the bundle behind PyTriton's `tritonserver` (HTTP, gRPC, metrics, dynamic
  batching, several instances). PyTriton lives in its own environment (`make serving-venv`).
* `loadtest`: N concurrent `tritonclient` clients x M frames on 127.0.0.1, every response compared bit for bit
  with the in-process `Restorer`.

Only `server` and `loadtest` import PyTriton / tritonclient, inside their functions. Imports no torch.
"""
