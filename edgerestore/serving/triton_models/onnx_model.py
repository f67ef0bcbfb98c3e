"""One ONNX graph of an edgerestore bundle as a Triton Python-backend model (written by
`edgerestore export-triton --graph-backend python`, for a Triton without the onnxruntime backend). Runs
`model.onnx` with the runtime's own ONNX Runtime backend and the bundle's session options, so its outputs
are the in-process runtime's. Needs `edgerestore` installed in the Python backend's environment.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from edgerestore.runtime.ort import OnnxRuntimeBackend
        from edgerestore.serving.protocol import respond

        config = json.loads(args["model_config"])
        options = json.loads(config["parameters"]["session_options"]["string_value"])
        path = Path(args["model_repository"]) / str(args["model_version"]) / "model.onnx"
        self.backend = OnnxRuntimeBackend(session_options=options)
        self.info = self.backend.load("graph", path)
        self.respond = respond

    def execute(self, requests):
        return self.respond(pb_utils, requests, self._feeds, lambda feeds: self.backend.infer("graph", feeds))

    def _feeds(self, request):
        return {
            t.name: pb_utils.get_input_tensor_by_name(request, t.name).as_numpy() for t in self.info.inputs
        }

    def finalize(self):
        self.backend.close()
