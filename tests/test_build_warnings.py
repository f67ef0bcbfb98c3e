"""`edgerestore build` says when a precision does not suit the CPU: fp16 on ONNX Runtime, INT8 that does not
pay (its speed against fp32 measured in the build; the ratio is stubbed here, never asserted as a timing)."""

from __future__ import annotations

import pytest

from edgerestore.cli import main


def _build(tmp_path, precision: str, *extra: str) -> list[str]:
    return [
        "build",
        "--profile",
        "uffn-tiny",
        "--precision",
        precision,
        "--backend",
        "onnxruntime",
        "--export-root",
        str(tmp_path / "export"),
        "--out",
        str(tmp_path / precision),
        "--quiet",
        *extra,
    ]


def test_fp16_on_onnxruntime_warns_in_one_line_and_fp32_does_not(tmp_path, capsys):
    assert main(_build(tmp_path, "fp16")) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "fp16 is for GPUs" in x]
    assert line.startswith("warning:") and "fp32" in line
    assert main(_build(tmp_path, "fp32")) == 0
    assert "fp16 is for GPUs" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("speedup", "said"),
    [(1.05, "INT8 does not pay on this CPU: 1.05x"), (0.9, "slower than"), (1.6, "1.60x faster than fp32")],
)
def test_int8_build_says_whether_it_pays_against_fp32(tmp_path, capsys, monkeypatch, speedup, said):
    import edgerestore.measure.roofline as roofline

    timed = []

    def stub(bundle, reference, *a, **k):
        timed.append((bundle, reference))
        return speedup, "stub"

    monkeypatch.setattr(roofline, "speedup_vs_fp32", stub)
    assert main(_build(tmp_path, "int8")) == 0
    err = capsys.readouterr().err
    assert said in err
    assert ("the CPU default stays fp32" in err) == (speedup < 1.3)
    (bundle, reference) = timed[0]
    assert (reference / "trunk.onnx").is_file() and bundle == tmp_path / "int8"
    assert main(_build(tmp_path, "int8")) == 0  # up to date: nothing rebuilt, nothing re-timed
    assert len(timed) == 1


def test_the_int8_check_times_a_bundle_against_float32_graphs(tmp_path):
    from edgerestore.measure.roofline import speedup_vs_fp32
    from edgerestore.testing import write_bundle

    bundle = write_bundle(tmp_path / "bundle", thumbnail_size=32, features=4)
    ratio, what = speedup_vs_fp32(bundle, bundle, (32, 48), rounds=2, warmup=0)  # itself: ~1, any machine
    assert 0 < ratio < float("inf") and "interleaved" in what
