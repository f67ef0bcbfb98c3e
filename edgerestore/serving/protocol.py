"""The served restorer's tensors and the one place frames become responses (PyTriton and the BLS model both
call `restore_batch`, so a served frame is restored exactly as the in-process `Restorer` restores it), and
`respond`, the request loop both Triton Python-backend models (triton_models/) run.

Requests carry `frame`: uint8 [B, H, W, 3] BGR (B = 1 per client request; Triton's dynamic batcher stacks
same-sized frames from many clients). Responses: `image` uint8 [B, H, W, 3] (the restored frame, or the
input itself when the router says clean), `condition` BYTES [B, 1], `confidence` FP32 [B, 1] (NaN where the
router did not run), `restored` BOOL [B, 1]. Frames are independent: no smoothing across requests, since
requests of many streams interleave.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: name -> (numpy dtype, per-sample shape); the batch dimension is implied (max_batch_size > 0)
INPUTS: dict[str, tuple[Any, tuple[int, ...]]] = {"frame": (np.uint8, (-1, -1, 3))}
OUTPUTS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "image": (np.uint8, (-1, -1, 3)),
    "condition": (np.bytes_, (1,)),
    "confidence": (np.float32, (1,)),
    "restored": (np.bool_, (1,)),
}
MODEL_NAME = "edgerestore"


def restore_batch(restorer: Any, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs (see the module doc) for `frames` uint8 [B, H, W, 3], one `restorer(frame)` call each."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frame must be uint8 [B, H, W, 3] (BGR), got {frames.dtype} {list(frames.shape)}")
    results = [restorer(np.ascontiguousarray(f)) for f in frames]
    return {
        "image": np.stack([r.image for r in results]),
        "condition": np.array([[r.condition.encode()] for r in results], dtype=np.object_),
        "confidence": np.array([[r.confidence] for r in results], dtype=np.float32),
        "restored": np.array([[bool(r.restored)] for r in results], dtype=np.bool_),
    }


def respond(pb_utils: Any, requests: list, read: Any, run: Any) -> list:
    """Triton Python-backend responses, one per request: `read(request)` takes its inputs, `run(inputs)`
    gives {name: array}, its output tensors; a request whose `run` raises fails alone, with its reason.
    `pb_utils` is the backend's `triton_python_backend_utils` (the model passes it in)."""
    responses = []
    for request in requests:
        inputs = read(request)
        try:
            outputs = run(inputs)
        except Exception as exc:  # one bad request fails alone, with its reason
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            continue
        tensors = [pb_utils.Tensor(name, value) for name, value in outputs.items()]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses
