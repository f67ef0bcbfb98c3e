"""`edgerestore restore` in subprocesses with a FakeRestorer: same names under --out, side-by-side, the
per-file report, and one-line errors with no half-written outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from video_fakes import FakeRestorer, make_video  # noqa: E402

FAKES = str(Path(__file__).parent / "video_fakes.py")
ROOT = Path(__file__).resolve().parent.parent


def _restore(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, FAKES, "restore", "--quiet", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _inputs(root: Path) -> Path:
    folder = root / "in"
    (folder / "night").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((40, 50, 3), 100, np.uint8))
    cv2.imwrite(str(folder / "night" / "b.jpg"), np.full((31, 45, 3), 60, np.uint8))
    cv2.imwrite(str(folder / "gray16.png"), np.full((20, 30), 40000, np.uint16))
    make_video(folder / "clip.avi", 12)
    return folder


def test_folder_of_images_and_videos_is_restored_under_the_same_names(tmp_path):
    _inputs(tmp_path)
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert written == ["a.png", "clip.avi", "gray16.png", "night/b.jpg", "restore_report.json"]
    a = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert a.shape == (40, 50, 3) and int(a[0, 0, 0]) == 140, "the fake restorer brightens by 40"
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    report = {
        Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "restore_report.json").read_text())
    }
    assert report["a.png"]["condition"] == "rain" and report["a.png"]["confidence"] == 0.9
    assert report["clip.avi"]["frames"] == 12 and report["clip.avi"]["conditions"] == {"rain": 12}
    assert "restored 4 of 4 files" in proc.stdout


def test_side_by_side_forced_condition_and_csv_report(tmp_path):
    _inputs(tmp_path)
    proc = _restore(
        [
            "in/a.png",
            "in/night/b.jpg",
            "--out",
            "sbs",
            "--side-by-side",
            "--force",
            "haze",
            "--report",
            "r.csv",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "sbs" / "a.png")).shape == (40, 100, 3)
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(Path(r["input"]).name, r["condition"], r["confidence"]) for r in rows] == [
        ("a.png", "haze", ""),
        ("b.jpg", "haze", ""),
    ]


def test_unreadable_file_is_one_line_error_nonzero_exit_and_no_partial_output(tmp_path):
    folder = _inputs(tmp_path)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "broken.mp4").write_bytes(b"nope")
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and "broken.mp4" in errors[0] and "broken.png" in errors[1], proc.stderr
    assert "Traceback" not in proc.stderr
    names = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert "broken.png" not in names and "broken.mp4" not in names
    assert not [n for n in names if n.startswith(".") or "partial" in n], names
    report = {
        Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "restore_report.json").read_text())
    }
    assert report["broken.png"]["error"] and report["broken.png"]["output"] is None
    assert report["a.png"]["error"] is None


def test_missing_input_and_output_over_input_are_one_line_errors(tmp_path):
    _inputs(tmp_path)
    for args, message in (
        (["nothing.png", "--out", "o"], "nothing.png: no such file or folder"),
        (["in", "--out", "in"], "would overwrite the input"),
        (["in", "--out", "o", "--report", "r.txt"], "use a .json or .csv"),
    ):
        proc = _restore(args, tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert (
            len(proc.stderr.strip().splitlines()) == 1
            and message in proc.stderr
            and "Traceback" not in proc.stderr
        )
    assert not (tmp_path / "o").exists()


def test_unwritable_out_or_report_is_a_one_line_error_before_any_work(tmp_path):
    _inputs(tmp_path)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder.json").mkdir()
    cases = [
        (["--out", "a_file/sub"], "cannot write a_file/sub: a_file is not a folder; choose a writable --out"),
        (["--out", "a_file"], "cannot write a_file: it is not a folder; choose a writable --out"),
        (
            ["--out", "o", "--report", "folder.json"],
            "cannot write folder.json: it is a folder; choose a writable --report",
        ),
    ]
    if Path("/proc").is_dir():
        cases += [
            (["--out", "/proc/foo"], "cannot write /proc/foo: "),
            (["--out", "o", "--report", "/proc/r.json"], "cannot write /proc/r.json: "),
        ]
    for args, message in cases:
        proc = _restore(["in/a.png", *args], tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"edgerestore restore: error: {lines[0].partition('error: ')[2]}"], proc.stderr
        assert message in lines[0], (args, proc.stderr)
    assert not (tmp_path / "o").exists()


def test_an_output_that_is_a_folder_fails_that_file_only_with_its_name(tmp_path):
    _inputs(tmp_path)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    (tmp_path / "out" / "clip.avi").mkdir()
    proc = _restore(["in/a.png", "in/night/b.jpg", "in/clip.avi", "--out", "out"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "out/a.png: it is a folder" in errors[0] and "out/clip.avi" in errors[1], errors
    assert (tmp_path / "out" / "b.jpg").is_file()
    names = [p.name for p in (tmp_path / "out").rglob("*")]
    assert not [n for n in names if n.startswith(".") or "partial" in n], names


def test_per_file_errors_name_the_file(tmp_path):
    folder = _inputs(tmp_path)
    cv2.imwrite(str(folder / "night" / "thin.png"), np.full((7, 1001, 3), 50, np.uint8))
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors == [
        "edgerestore restore: error: in/night/thin.png: frame of 7x1001 is too small; "
        "both sides must be at least 8 pixels"
    ], proc.stderr
    report = {
        Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "restore_report.json").read_text())
    }
    assert report["thin.png"]["error"].startswith("in/night/thin.png: frame of 7x1001")


def _synthetic_bundle(root: Path, family: str = "uffn") -> Path:
    from edgerestore.testing import write_bundle

    return write_bundle(root / f"bundle-{family}", family=family)


def test_images_keep_bit_depth_channels_and_alpha_or_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    from edgerestore.cli import main

    monkeypatch.chdir(tmp_path)
    bundle = _synthetic_bundle(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    alpha = np.arange(24 * 30, dtype=np.uint8).reshape(24, 30)
    inputs = {
        "gray16.png": np.full((24, 30), 40000, np.uint16),
        "gray8.png": np.full((24, 30), 100, np.uint8),
        "bgra.png": np.dstack([np.full((24, 30, 3), 100, np.uint8), alpha]),
        "bgra16.tif": np.dstack([np.full((24, 30, 3), 30000, np.uint16), alpha.astype(np.uint16) * 257]),
    }
    for name, image in inputs.items():
        assert cv2.imwrite(str(folder / name), image)
    ok, deep = cv2.imencode(".png", np.full((24, 30, 3), 40000, np.uint16))  # 16-bit content named .jpg
    (folder / "deep.jpg").write_bytes(deep.tobytes())
    rc = main(["restore", "in", "--out", "out", "--bundle", str(bundle), "--force", "rain", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [
        "edgerestore restore: error: in/deep.jpg: cannot write out/deep.jpg: .jpg cannot store 16-bit BGR "
        "pixels; the output keeps the input's name, so save the input as .png or .tif"
    ], err
    assert not (tmp_path / "out" / "deep.jpg").exists()
    for name, image in inputs.items():
        out = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert out.dtype == image.dtype and out.shape == image.shape, name
        assert not np.array_equal(out, image), f"{name} was not restored"
        if image.ndim == 3 and image.shape[2] == 4:
            np.testing.assert_array_equal(out[:, :, 3], image[:, :, 3])  # alpha passes through
        if image.dtype == np.uint16:
            assert not ((out[:, :, :3] if out.ndim == 3 else out) % 257).any(), name  # 8-bit inference x257


def test_force_with_a_blind_bundle_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from edgerestore.cli import main

    monkeypatch.chdir(tmp_path)
    bundle = _synthetic_bundle(tmp_path, "cmudrn")
    _inputs(tmp_path)
    assert main(["restore", "in/a.png", "--out", "out", "--bundle", str(bundle), "--force", "rain"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"edgerestore restore: error: --force rain: bundle {bundle} is a blind CMUDRN model with no router "
        "or branches to force; leave out --force"
    ]
    assert not (tmp_path / "out").exists()
    assert main(["restore", "in/a.png", "--out", "out", "--bundle", str(bundle), "--quiet"]) == 0


def _damage(src: Path, dst: Path, flips: int = 3000, seed: int = 0) -> Path:
    """Flip `flips` bytes between 20 % and 90 % of the file (a damaged stretch; the header survives)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(int(len(data) * 0.2), int(len(data) * 0.9), flips):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _textured_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    for i in range(frames):
        image = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
        image[::2, ::3] = np.random.default_rng(i).integers(0, 255, image[::2, ::3].shape, dtype=np.uint8)
        writer.write(image)
    writer.release()
    return path


def test_a_damaged_video_is_decoded_past_its_bad_frames_and_the_loss_is_reported(tmp_path):
    from edgerestore.runtime.video import CaptureSource

    (tmp_path / "in").mkdir()
    clip = _damage(_textured_video(tmp_path / "good.mp4", 288), tmp_path / "in" / "bad.mp4")
    source = CaptureSource(str(clip), kind="file")
    source.open()
    decoded = 0
    while source.read() is not None:
        decoded += 1
    source.close()
    assert decoded >= 250, f"only {decoded} of 288 frames: decoding stopped at the damage"
    assert source.lost_frames == 288 - decoded
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "restore_report.json").read_text())[0]
    assert report["frames"] == decoded and report["lost_frames"] == 288 - decoded and report["error"] is None
    if decoded < 288:
        assert f"{288 - decoded} of 288 frames do not decode" in proc.stderr


def test_a_truncated_avi_reports_the_frames_it_lost(tmp_path):
    from edgerestore.runtime.video import CaptureSource

    whole = make_video(tmp_path / "whole.avi", 120)
    half = tmp_path / "half.avi"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    source = CaptureSource(str(half), kind="file")
    source.open()
    decoded = 0
    while source.read() is not None:
        decoded += 1
    assert 40 <= decoded < 120 and source.lost_frames == 120 - decoded


def test_the_default_bundle_is_one_fp32_bundle_found_the_same_from_any_folder(tmp_path, capsys, monkeypatch):
    """No --bundle: <engines root>/uffn-tiny-onnxruntime-fp32, whatever ./engines holds; the run says which."""
    from edgerestore.cli import main
    from edgerestore.commands._bundle import default_bundle_path
    from edgerestore.testing import write_bundle

    engines = tmp_path / "shared_engines"
    monkeypatch.setenv("EDGERESTORE_ENGINES", str(engines))
    assert default_bundle_path() == engines / "uffn-tiny-onnxruntime-fp32"
    write_bundle(engines / "uffn-tiny-onnxruntime-fp32")
    for cwd in (tmp_path / "a", tmp_path / "b" / "deeper"):
        cwd.mkdir(parents=True)
        _inputs(cwd)
        write_bundle(cwd / "engines" / "uffn-tiny-onnxruntime-int8", family="cmudrn")  # must not be picked
        monkeypatch.chdir(cwd)
        assert main(["restore", "in/a.png", "--out", "out", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert f"bundle: {engines / 'uffn-tiny-onnxruntime-fp32'}" in out, out
    monkeypatch.setenv("EDGERESTORE_ENGINES", str(tmp_path / "fresh"))  # none yet: built there, fp32
    assert main(["restore", "in/a.png", "--out", "out2", "--quiet"]) == 0
    built = tmp_path / "fresh" / "uffn-tiny-onnxruntime-fp32"
    assert (built / "manifest.json").is_file() and f"bundle: {built}" in capsys.readouterr().out


def test_engines_root_is_the_checkout_folder_whatever_the_current_folder(tmp_path, monkeypatch):
    from edgerestore.engines.bundle import engines_root

    monkeypatch.delenv("EDGERESTORE_ENGINES", raising=False)
    here = engines_root()
    monkeypatch.chdir(tmp_path)
    assert engines_root() == here and here.is_absolute()
    assert here == ROOT / "engines"  # the tests run from a source checkout


class _FailsOn(FakeRestorer):
    """A restorer that raises `exc` on frames of width `width` and brightens the others."""

    def __init__(self, width: int, exc: BaseException) -> None:
        super().__init__()
        self.width, self.exc = width, exc

    def __call__(self, frame):
        if frame.shape[1] == self.width:
            raise self.exc
        return super().__call__(frame)


def _with_restorer(monkeypatch, restorer) -> None:
    import edgerestore.commands.restore as restore_cmd

    monkeypatch.setattr(restore_cmd, "open_restorer", lambda args, **kw: restorer)


def test_an_unexpected_failure_on_one_file_fails_that_file_only_and_the_report_is_written(
    tmp_path, capsys, monkeypatch
):
    from edgerestore.cli import main

    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    oom = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory\nstack...")
    _with_restorer(monkeypatch, _FailsOn(45, oom))  # night/b.jpg is 45 px wide
    assert main(["restore", "in", "--out", "out", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: {Path('in/night/b.jpg')}: RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION" in err
    report = {
        Path(r["input"]).name: r for r in json.loads((tmp_path / "out" / "restore_report.json").read_text())
    }
    assert (
        report["b.jpg"]["error"].endswith("Failed to allocate memory") and report["b.jpg"]["output"] is None
    )
    assert report["a.png"]["error"] is None and report["clip.avi"]["frames"] == 12


def test_ctrl_c_during_restore_still_writes_the_report_of_the_files_done(tmp_path, capsys, monkeypatch):
    from edgerestore.cli import main

    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    _with_restorer(monkeypatch, _FailsOn(45, KeyboardInterrupt()))
    assert main(["restore", "in", "--out", "out", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "stopped after" in err and "interrupted" in err
    report = json.loads((tmp_path / "out" / "restore_report.json").read_text())
    done = [Path(r["input"]).name for r in report]
    assert done and "b.jpg" not in done and all(r["error"] is None for r in report)
    assert not [p for p in (tmp_path / "out").rglob("*") if "partial" in p.name or p.name.startswith(".")]


def test_restoring_a_folder_into_a_folder_inside_it_twice_skips_its_own_outputs(tmp_path):
    _inputs(tmp_path)
    for _ in range(2):
        proc = _restore(["in", "--out", "in/out"], tmp_path)
        assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "in" / "out" / "restore_report.json").read_text())
    assert sorted(Path(r["input"]).name for r in report) == ["a.png", "b.jpg", "clip.avi", "gray16.png"]
    assert not (tmp_path / "in" / "out" / "out").exists()


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with an APP1 EXIF segment (big-endian TIFF, one IFD0 entry: Orientation) after SOI."""
    ifd = (1).to_bytes(2, "big") + (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big")
    ifd += (1).to_bytes(4, "big") + orientation.to_bytes(2, "big") + b"\0\0" + (0).to_bytes(4, "big")
    tiff = b"MM" + (42).to_bytes(2, "big") + (8).to_bytes(4, "big") + ifd
    body = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_jpeg_with_exif_orientation_is_restored_upright(tmp_path, orientation):
    from edgerestore.imageio import jpeg_orientation, read_image_as_stored

    image = np.zeros((40, 60, 3), np.uint8)
    image[:10, :20] = 255  # a bright corner shows the turn
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    data = _with_exif_orientation(encoded.tobytes(), orientation)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "photo.jpg").write_bytes(data)
    assert jpeg_orientation(data) == orientation
    upright = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies the EXIF turn
    got = read_image_as_stored(tmp_path / "in" / "photo.jpg", upright=True)
    assert got.shape == upright.shape and np.abs(got.astype(int) - upright.astype(int)).max() <= 2
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "out" / "photo.jpg"), cv2.IMREAD_UNCHANGED).shape == upright.shape


def test_a_broken_symlink_in_an_input_folder_is_named_in_a_warning(tmp_path):
    _inputs(tmp_path)
    (tmp_path / "in" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipping {Path('in/gone.jpg')}: a broken symbolic link" in proc.stderr


def test_a_video_restored_onto_a_full_disk_is_an_error_for_that_file_and_leaves_no_file(tmp_path, tiny_tmpfs):
    (tmp_path / "in").mkdir()
    _textured_video(tmp_path / "in" / "big.mp4", 120)
    cv2.imwrite(str(tmp_path / "in" / "small.png"), np.full((20, 20, 3), 50, np.uint8))
    proc = _restore(["in", "--out", str(tiny_tmpfs)], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        f"error: {Path('in/big.mp4')}: recording to {tiny_tmpfs / 'big.mp4'} failed: No space left"
        in proc.stderr
    )
    report = {Path(r["input"]).name: r for r in json.loads((tiny_tmpfs / "restore_report.json").read_text())}
    assert report["big.mp4"]["output"] is None and "failed" in report["big.mp4"]["error"]
    assert report["small.png"]["error"] is None
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["restore_report.json", "small.png"]


def test_libpng_messages_do_not_print_before_ours(tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(
        str(tmp_path / "ok.png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    )
    data = bytearray((tmp_path / "ok.png").read_bytes())
    data[100:140] = b"x" * 40  # inside the image data: a CRC error libpng reports on its own
    (tmp_path / "in" / "bad.png").write_bytes(bytes(data))
    proc = _restore(["in", "--out", "out"], tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("edgerestore restore: ") for line in lines), lines
    assert "(libpng: IDAT: CRC error)" in lines[0]


def test_file_uris_and_the_shared_output_codec_flag(tmp_path):
    make_video(tmp_path / "clip.avi", 4)
    for flag in ("--output-codec", "--fourcc"):  # the shared name, and restore's older spelling
        proc = _restore([f"file://{tmp_path / 'clip.avi'}", "--out", "out", flag, "mp4v"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.avi"))
        codec = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
        cap.release()
        assert codec.upper() in ("FMP4", "MP4V")  # not MJPG, .avi's default
    proc = _restore(["rtsp://cam/stream", "--out", "out"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "live sources go to `edgerestore camera --source rtsp://cam/stream`" in lines[0]
    )


def test_out_may_be_a_file_uri_of_a_folder(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 50, 3), 100, np.uint8))
    proc = _restore(["a.png", "--out", "file://restored"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "restored" / "a.png").is_file() and not (tmp_path / "file:").exists()
