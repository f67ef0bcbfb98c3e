"""The contract's precision vocabulary, `ExportDir`'s records and staleness, and the one progress reporter."""

from __future__ import annotations

import json
import shutil

import pytest

from edgerestore.contract import (
    LADDERS,
    PRECISIONS,
    VARIANTS,
    check_precision,
    precision_of,
    variant_for,
)
from edgerestore.errors import UserError
from edgerestore.exportdir import MODEL_JSON, PRECISION_JSON, ExportDir
from edgerestore.progress import Progress, as_progress


def test_each_backend_and_precision_names_its_variant_and_every_rung_its_manifest_precision():
    assert {(b, p): variant_for(b, p) for b in ("onnxruntime", "tensorrt") for p in PRECISIONS} == {
        ("onnxruntime", "fp32"): None,
        ("onnxruntime", "fp16"): "fp16",
        ("onnxruntime", "int8"): "int8_ort",
        ("tensorrt", "fp32"): None,
        ("tensorrt", "fp16"): "fp16",
        ("tensorrt", "int8"): "int8_trt",
    }
    assert set(LADDERS) == set(VARIANTS) and all(
        ladder[0] == v and ladder[-1] == "fp32" for v, ladder in LADDERS.items()
    )
    assert [precision_of(r) for r in ("fp32", "fp16", "int8_trt", "int8_ort", "FLOAT16", "int4")] == [
        "fp32",
        "fp16",
        "int8",
        "int8",
        "fp16",
        None,
    ]
    assert check_precision("int8") == "int8"
    with pytest.raises(UserError, match=r"^unknown precision 'int4'; expected one of fp32, fp16, int8$"):
        check_precision("int4")
    with pytest.raises(UserError, match=r"^unknown precision 'int4'"):
        variant_for("onnxruntime", "int4")


def test_both_bundle_entry_points_refuse_an_unknown_precision_before_any_work(tmp_path):
    """`--precision` is checked where it is mapped to graphs (`variant_for`), first thing in `ensure_bundle`
    and in `build_bundle`: nothing is exported, converted or built, and nothing else is complained about."""
    from edgerestore.engines.build import build_bundle
    from edgerestore.pipeline import ensure_bundle

    with pytest.raises(UserError, match=r"^unknown precision 'int4'"):
        build_bundle(tmp_path / "no-export", precision="int4", backend="onnxruntime", progress=False)
    with pytest.raises(UserError, match=r"^unknown precision 'int4'"):
        ensure_bundle(
            "uffn-tiny", "int4", "onnxruntime", export_root=tmp_path, engines_root=tmp_path, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_export_dir_reads_its_records_once_and_says_what_is_stale(tmp_path):
    from engine_graphs import write_export_dir

    export = ExportDir(write_export_dir(tmp_path, variants=("fp16",)))
    assert export.exists() and export.verify(load=True) is export and export.meta is export.meta
    assert export.graph_path("trunk") == export.path / "trunk.onnx"
    with pytest.raises(UserError, match="has no graph 'nothing'"):
        export.graph_path("nothing")
    assert export.precision_record("fp16", "fix")["precision"] == "fp16"
    with pytest.raises(UserError, match=r"no int8_ort graphs: .* not found; fix$"):
        export.precision_record("int8_ort", "fix")
    # precision.json without the source hashes the precision step records: made from other graphs
    assert export.variant_stale("fp16") == "fp16/router was made from other float32 graphs"
    assert export.variant_stale("int8_ort") == "no int8_ort graphs"
    record = export.variant_dir("fp16") / PRECISION_JSON
    info = json.loads(record.read_text())
    for name, entry in info["graphs"].items():
        entry["source_sha256"] = export.graphs[name]["sha256"]
    record.write_text(json.dumps(info))
    assert export.variant_stale("fp16") is None
    copy = export.copy_graphs(tmp_path / "copy")
    assert (
        copy.meta == export.meta
        and (copy.path / "trunk.onnx").read_bytes() == (export.path / "trunk.onnx").read_bytes()
    )
    with open(copy.path / "trunk.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="trunk.onnx changed after export"):
        copy.verify()
    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"weights")
    assert "is corrupt" in ExportDir(copy.path).stale(checkpoint)  # stale() loads the graphs too
    assert export.stale(checkpoint, "other") == f"{export.path} holds tiny-test graphs, not other"
    assert export.stale(checkpoint) == f"{checkpoint} changed since the last export"
    assert ExportDir(tmp_path / "none").stale(checkpoint) == "no exported graphs"


def test_export_dir_refuses_foreign_or_empty_model_json_in_one_line(tmp_path):
    (tmp_path / MODEL_JSON).write_text("{}")
    with pytest.raises(UserError, match="is not an edgerestore export") as exc:
        _ = ExportDir(tmp_path).meta
    assert "\n" not in str(exc.value)
    (tmp_path / MODEL_JSON).write_text("not json")
    with pytest.raises(UserError, match="is not readable JSON"):
        _ = ExportDir(tmp_path).meta
    shutil.rmtree(tmp_path)
    with pytest.raises(UserError, match=f"{MODEL_JSON} not found; run `edgerestore export --profile"):
        _ = ExportDir(tmp_path).meta


def test_a_disabled_reporter_is_silent(capsys):
    quiet = as_progress(False)
    assert isinstance(quiet, Progress) and not quiet and as_progress(quiet) is quiet
    assert list(quiet.each([1, 2, 3], "items")) == [1, 2, 3]
    bar = quiet.bar(4, "steps", "step", initial=1)
    bar.update(2)
    bar.set_postfix_str("x")
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
