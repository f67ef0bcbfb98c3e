"""The demo's clip generation (cached, labelled segments) and `run_demo` with a FakeRestorer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))

from video_fakes import FakeRestorer, ensure_degrade  # noqa: E402

ensure_degrade()  # the real edgerestore.data.degrade when present

from edgerestore.commands.demo import make_demo_clip, run_demo  # noqa: E402
from edgerestore.conditions import CONDITIONS  # noqa: E402
from edgerestore.runtime.video import count_video_frames  # noqa: E402


def _clip(tmp_path: Path):
    return make_demo_clip(tmp_path / "data", size=(96, 64), frames_per_segment=4, fps=8, progress=False)


def test_demo_clip_has_one_labelled_segment_per_condition_and_is_cached(tmp_path):
    clip = _clip(tmp_path)
    assert [c for c, _, _ in clip.segments] == list(CONDITIONS)
    assert count_video_frames(clip.path) == len(clip.labels) == 20
    first = cv2.VideoCapture(str(clip.path)).read()[1]
    assert first.shape == (64, 96, 3)
    mtime = clip.path.stat().st_mtime_ns
    again = _clip(tmp_path)
    assert again.path == clip.path and again.labels == clip.labels and clip.path.stat().st_mtime_ns == mtime
    assert not [p for p in clip.path.parent.iterdir() if "partial" in p.name]


def _quiet_demo(out: Path, restorer, lines: list[str], **options):
    """`run_demo` of `restorer` into `out` without a progress bar, its printed lines collected in `lines`."""
    return run_demo(None, out, restorer=restorer, echo=lines.append, progress=False, **options)


def test_run_demo_writes_side_by_side_video_contact_sheet_and_latency_summary(tmp_path):
    clip = _clip(tmp_path)
    lines: list[str] = []
    report = _quiet_demo(tmp_path / "out", FakeRestorer(latency_ms=1), lines, clip=clip)
    video = Path(report.video)
    assert count_video_frames(video) == 20
    assert cv2.VideoCapture(str(video)).read()[1].shape == (64, 192, 3)
    sheet = cv2.imread(report.contact_sheet)
    row_height = round(64 * 320 / 96)  # each half is scaled to 320 px wide
    assert sheet.shape == (5 * row_height, 640, 3), "one raw | restored row per segment"
    data = json.loads(Path(report.summary_json).read_text())
    assert data["summary"]["frames_out"] == 20 and data["summary"]["dropped"] == 0
    accuracy = {s["condition"]: s["router_accuracy"] for s in data["segments"]}
    assert accuracy == {"clean": 0.0, "rain": 1.0, "haze": 0.0, "raindrop": 0.0, "snow": 0.0}
    assert "| rain | 4 | rain 4 | 100% |" in lines[0]


def test_demo_help_and_errors_name_only_options_demo_has(tmp_path, monkeypatch, capsys):
    import pytest

    from edgerestore.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "engines/uffn-tiny-onnxruntime-fp32" in help_text and "-int8, else" not in help_text
    monkeypatch.chdir(tmp_path)  # no weights/ here, and uffn-base graphs are not shipped
    assert main(["demo", "--profile", "uffn-base", "--data-dir", str(tmp_path / "data")]) == 2
    (tmp_path / "a_file").write_text("x")
    assert main(["demo", "--out", "a_file/o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("edgerestore demo: error: ") for line in err), err
    assert "no weights for uffn-base" in err[0] and err[0].endswith("or pass --bundle DIR"), err
    assert "--checkpoint" not in err[0]
    assert err[1].endswith("cannot write a_file/o: a_file is not a folder; choose a writable --out"), err
    assert not (tmp_path / "demo_out").exists()


def test_a_short_run_samples_the_frames_it_processed_and_a_failure_leaves_no_outputs(tmp_path, monkeypatch):
    import pytest

    import edgerestore.commands.demo as demo
    from edgerestore.errors import UserError

    clip = _clip(tmp_path)
    lines: list[str] = []
    report = _quiet_demo(tmp_path / "out", FakeRestorer(), lines, clip=clip, max_frames=5)
    assert count_video_frames(Path(report.video)) == 5
    row_height = round(64 * 320 / 96)
    assert cv2.imread(report.contact_sheet).shape == (2 * row_height, 640, 3), "clean (4 frames) and rain (1)"
    data = json.loads(Path(report.summary_json).read_text())
    assert [(s["condition"], s["frames"]) for s in data["segments"]] == [("clean", 4), ("rain", 1)]

    def failing_sheet(segments):
        raise UserError("the sheet failed")

    monkeypatch.setattr(demo, "contact_sheet", failing_sheet)
    with pytest.raises(UserError, match="the sheet failed"):
        run_demo(None, tmp_path / "failed", clip=clip, restorer=FakeRestorer(), max_frames=5, progress=False)
    assert not [p.name for p in (tmp_path / "failed").iterdir()], "no video without its sheet and summary"


def test_negative_max_frames_is_refused_in_one_line(tmp_path, capsys):
    from edgerestore.cli import main

    assert main(["demo", "--max-frames", "-1", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "edgerestore demo: error: --max-frames must be ≥ 0"
    ]
    assert not (tmp_path / "o").exists()


def test_run_demo_on_an_input_uri_groups_frames_by_the_routers_verdict(tmp_path):
    from video_fakes import make_video

    make_video(tmp_path / "mine.avi", 6, size=(96, 64), fps=10)
    lines: list[str] = []
    report = _quiet_demo(
        tmp_path / "out",
        FakeRestorer(condition="haze", confidence=0.8),
        lines,
        input_uri=f"file://{tmp_path / 'mine.avi'}",
        output_codec="MJPG",
    )
    assert count_video_frames(report.video) == 6
    sheet = cv2.imread(report.contact_sheet)
    assert sheet.shape == (round(64 * 320 / 96), 640, 3), "one row: the only condition the router chose"
    data = json.loads(Path(report.summary_json).read_text())
    assert data["clip"] == f"file://{tmp_path / 'mine.avi'}"
    assert data["segments"] == [
        {"condition": "haze", "frames": 6, "detected": {"haze": 6}, "router_accuracy": None}
    ]
    assert "| haze | 6 | haze 6 | — |" in lines[0]
