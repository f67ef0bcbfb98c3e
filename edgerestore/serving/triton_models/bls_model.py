"""edgerestore BLS model (written by `edgerestore export-triton`): router -> trunk -> the one selected
branch, each graph a BLS request to this repository's `<prefix><graph>` models, composed by the runtime's
own `Restorer`. Needs `edgerestore` installed in the Python backend's environment.

Input `frame` uint8 [B, H, W, 3] BGR; outputs `image`, `condition`, `confidence`, `restored` (see
`edgerestore.serving.protocol`).
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from edgerestore.serving.bls import MANIFEST_NAME, open_restorer
        from edgerestore.serving.protocol import respond, restore_batch

        config = json.loads(args["model_config"])
        prefix = config["parameters"]["graph_model_prefix"]["string_value"]
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        graphs = json.loads((version_dir / MANIFEST_NAME).read_text())["graphs"]
        self.restorer = open_restorer(version_dir, pb_utils, {g: prefix + g for g in graphs})
        self.restore_batch, self.respond = restore_batch, respond

    def execute(self, requests):
        return self.respond(
            pb_utils,
            requests,
            lambda request: pb_utils.get_input_tensor_by_name(request, "frame").as_numpy(),
            lambda frames: self.restore_batch(self.restorer, frames),
        )

    def finalize(self):
        self.restorer.close()
