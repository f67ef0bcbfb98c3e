"""`edgerestore doctor`: one screen of what is installed, which bundles run here and why not; exit 0 when the
default path works."""

from __future__ import annotations

import shutil

from edgerestore import assets
from edgerestore.cli import main
from edgerestore.pipeline import ensure_bundle


def test_doctor_lists_the_device_and_judges_each_bundle(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGERESTORE_ENGINES", str(tmp_path / "engines"))  # not the checkout's engines/
    good = ensure_bundle("uffn-tiny", "fp32", "onnxruntime", progress=False, echo=lambda line: None).bundle
    broken = tmp_path / "engines/uffn-tiny-onnxruntime-copy"
    shutil.copytree(good, broken)
    (broken / "trunk.onnx").write_bytes((broken / "trunk.onnx").read_bytes()[:-8] + b"\0" * 8)
    assert main(["doctor", "--no-display-check"]) == 0
    out = capsys.readouterr().out
    assert "providers: " in out and "CPUExecutionProvider" in out
    assert "CUDA driver" in out and "video I/O" in out and "FFMPEG" in out
    assert "shipped graphs cmudrn-t3, uffn-small, uffn-tiny" in out
    assert "✓ uffn-tiny-onnxruntime-fp32" in out
    assert "✗ uffn-tiny-onnxruntime-copy: trunk.onnx sha256 mismatch" in out
    assert "default path: the default uffn-tiny bundle runs here" in out
    assert len(out.splitlines()) < 40  # one screen


def test_doctor_fails_when_the_default_path_cannot_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGERESTORE_ENGINES", str(tmp_path / "engines"))
    monkeypatch.setattr(assets, "shipped_profiles", lambda root=assets.SHIPPED_ROOT: [])
    assert main(["doctor", "--no-display-check"]) == 1
    out = capsys.readouterr().out
    assert "shipped graphs none" in out and "default path: the default path does not work here" in out
