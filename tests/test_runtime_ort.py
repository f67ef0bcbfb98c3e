"""ONNX Runtime backend: session options from the manifest, output buffers reused across frames and grown
only when a frame grows, the trunk's features handed to the branch as the same OrtValue."""

from __future__ import annotations

import numpy as np
import pytest

from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.ort import OnnxRuntimeBackend, make_session_options
from edgerestore.runtime.restorer import Restorer
from edgerestore.testing import write_bundle


def test_session_options_come_from_the_manifest_and_threads_override():
    import onnxruntime as ort

    so = make_session_options(
        {
            "graph_optimization_level": "ORT_ENABLE_BASIC",
            "execution_mode": "sequential",
            "intra_op_num_threads": 3,
            "config_entries": {"session.intra_op.allow_spinning": "0"},
        }
    )
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.intra_op_num_threads == 3
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert make_session_options({"intra_op_num_threads": 3}, threads=1).intra_op_num_threads == 1
    with pytest.raises(BundleError, match="unknown key 'warp_drive'"):
        make_session_options({"warp_drive": True})
    with pytest.raises(BundleError, match="not a valid"):
        make_session_options({"graph_optimization_level": "ORT_ENABLE_EVERYTHING"})
    with pytest.raises(UserError, match="threads"):
        make_session_options({}, threads=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"intra_op_num_threads": "x"}, "intra_op_num_threads='x' is not a valid int"),
        ({"enable_cpu_mem_arena": "yes"}, "enable_cpu_mem_arena='yes' is not a valid bool"),
        ({"graph_optimization_level": 5}, "graph_optimization_level=5 is not a valid GraphOptimizationLevel"),
        ({"config_entries": ["a"]}, "config_entries must be an object"),
    ],
)
def test_hand_edited_session_options_of_the_wrong_type_are_one_line_bundle_errors(tmp_path, options, message):
    bundle = write_bundle(tmp_path, session_options=options)
    with pytest.raises(BundleError) as excinfo:
        Restorer.open(bundle, threads=1)
    text = str(excinfo.value)
    assert "\n" not in text and message in text, text


def test_bundle_session_options_reach_the_sessions(tmp_path):
    bundle = write_bundle(tmp_path, session_options={"graph_optimization_level": "ORT_DISABLE_ALL"})
    with Restorer.open(bundle, threads=1) as r:
        sess = r.backend._sessions["trunk"]
        import onnxruntime as ort

        assert (
            sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        assert sess.get_session_options().intra_op_num_threads == 1


def test_outputs_reuse_buffers_and_features_stay_ortvalues(tmp_path):
    with Restorer.open(write_bundle(tmp_path), threads=1, force="rain") as r:
        be: OnnxRuntimeBackend = r.backend
        big, small = np.full((96, 128, 3), 90, np.uint8), np.full((48, 64, 3), 90, np.uint8)
        r(big)
        allocations = be.allocations
        for _ in range(3):
            r(small)
            r(big)
        assert be.allocations == allocations  # same or smaller frames: no new buffers
        r(np.full((100, 130, 3), 90, np.uint8))
        assert be.allocations > allocations
        features = be.output("trunk", "features")
        assert type(features.handle).__name__ == "OrtValue"
        assert features.shape == (1, 4, 50, 65)
        assert be.input("branch_rain", "features").handle is features.handle  # same OrtValue, no host trip


def test_intra_op_threads_do_not_spin_unless_the_manifest_asks():
    key = "session.intra_op.allow_spinning"
    assert make_session_options({}).get_session_config_entry(key) == "0"
    assert make_session_options({"config_entries": {key: "1"}}).get_session_config_entry(key) == "1"


def test_sessions_share_one_cpu_arena_so_memory_is_one_graphs_peak_not_the_sum():
    from edgerestore.runtime.ort import make_session_options

    so = make_session_options(None)
    assert so.get_session_config_entry("session.use_env_allocators") == "1"
    own = make_session_options({"config_entries": {"session.use_env_allocators": "0"}})
    assert own.get_session_config_entry("session.use_env_allocators") == "0"  # a manifest may opt out
