"""The reference workload: a fixed ONNX Runtime graph timed beside every bench frame (`bench --reference`).

Three float32 3×3 convolutions (16 channels at 180×320, ReLU between; seeded weights, built in memory) run
through ONNX Runtime with the restorer's own session options and intra-op threads. Nothing in this project
changes it, so its time is the machine's: timed right after each frame, in the same rounds, it slows down with
whatever else slows the machine down at that moment (another process on the cores, a neighbour on the
caches), and a frame's time divided by it (`--judge relative`: wall clock; `--judge cpu`: CPU time) cancels
such slowdowns while a slower code path still shows.

Imports onnx, onnxruntime and numpy; never torch.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgerestore.errors import UserError

#: The reference graph: channels, height, width, convolutions.
SHAPE = (16, 180, 320)
LAYERS = 3


def reference_model(
    channels: int = SHAPE[0], height: int = SHAPE[1], width: int = SHAPE[2], layers: int = LAYERS
):
    """(ONNX model, its input): `layers` float32 3×3 convolutions with ReLU, seeded weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = [1, channels, height, width]
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((channels, channels, 3, 3)) / (3.0 * channels**0.5)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        y = "y" if i == layers - 1 else f"r{i}"
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [y]),
        ]
        x = y
    graph = helper.make_graph(
        nodes,
        "edgerestore_reference",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, np.random.default_rng(1).standard_normal(shape).astype(np.float32)


class Reference:
    """The reference graph in a session of its own with `session_options` (the restorer's: the same intra-op
    threads). `time()` runs it once: (wall ms, process CPU ms)."""

    def __init__(self, session_options: Any) -> None:
        import onnxruntime as ort

        model, self._x = reference_model()
        self._session = ort.InferenceSession(
            model.SerializeToString(), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
        self._session.run(None, {"x": self._x})  # the first run allocates and plans

    @classmethod
    def for_restorer(cls, restorer: Any) -> Reference:
        """The reference beside `restorer`'s ONNX Runtime sessions; a one-line `UserError` on another
        backend (a TensorRT frame's time is the GPU's, which a CPU graph does not follow)."""
        options = getattr(restorer.backend, "session_options", None)
        if restorer.backend.name != "onnxruntime" or options is None:
            raise UserError(
                "--reference times a CPU graph beside ONNX Runtime frames; a "
                f"{restorer.backend.name} frame's time is not the CPU's (leave out --reference, --judge cpu and "
                "--judge relative)"
            )
        return cls(options)

    def time(self) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        self._session.run(None, {"x": self._x})
        return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
