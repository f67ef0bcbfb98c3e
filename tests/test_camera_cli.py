"""`edgerestore camera` end to end in subprocesses: one-line errors, headless runs, a recording that
survives Ctrl-C, the no-display fallback, and the window with its overlay under a virtual X server.

The CLI runs through tests/video_fakes.py, which swaps the model for a FakeRestorer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from video_fakes import make_video  # noqa: E402

FAKES = str(Path(__file__).parent / "video_fakes.py")
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _camera(
    args: list[str], tmp_path: Path, timeout: float = 60, real: bool = False, **env: str
) -> subprocess.CompletedProcess:
    """`edgerestore camera ARGS` in `tmp_path`, through tests/video_fakes.py (a FakeRestorer) or, `real`, the
    package's own CLI."""
    entry = ["-m", "edgerestore.cli"] if real else [FAKES]
    return subprocess.run(
        [sys.executable, *entry, "camera", *args],
        cwd=tmp_path,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "missing.mp4"], "unknown source 'missing.mp4'"),
        (["--source", "gopher://x"], "scheme 'gopher'"),
        (["--source", "notavideo.mp4"], "cannot open video"),
        (["--device", "/dev/video-none"], "does not exist"),
        (["--device", "57"], "cannot open camera 57"),  # and no OpenCV "Camera index out of range" line
    ],
)
def test_bad_sources_are_one_line_errors_without_traceback(tmp_path, args, message):
    (tmp_path / "notavideo.mp4").write_text("hello")
    proc = _camera([*args, "--headless"], tmp_path, real=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerestore camera: error: ") and message in lines[0], (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_missing_bundle_is_a_one_line_error(tmp_path):
    make_video(tmp_path / "clip.avi", 3)
    proc = _camera(
        ["--source", "clip.avi", "--headless", "--bundle", "nope"],
        tmp_path,
        real=True,
        EDGERESTORE_ENGINES=str(tmp_path / "engines"),  # not the checkout's (make demo builds there)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "edgerestore build" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_without_any_bundle_the_default_one_is_built_from_the_shipped_graphs(tmp_path):
    make_video(tmp_path / "clip.avi", 3)
    proc = _camera(
        ["--source", "clip.avi", "--headless", "--no-drop", "-q"],
        tmp_path,
        timeout=120,
        real=True,
        EDGERESTORE_ENGINES=str(tmp_path / "engines"),  # not the checkout's engines/
    )
    assert proc.returncode == 0, proc.stderr
    assert f"no bundle yet; building {tmp_path / 'engines/uffn-tiny-onnxruntime-fp32'}" in proc.stderr
    assert "3 in, 3 processed, 0 dropped" in proc.stdout
    assert (tmp_path / "engines/uffn-tiny-onnxruntime-fp32/manifest.json").is_file()


def test_headless_no_drop_run_processes_every_frame_and_prints_a_summary(tmp_path):
    make_video(tmp_path / "clip.avi", 25)
    proc = _camera(["--source", "clip.avi", "--headless", "--no-drop", "--summary-json", "s.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "25 in, 25 processed, 0 dropped" in proc.stdout
    assert "conditions  rain 25" in proc.stdout
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_in"] == summary["frames_out"] + summary["dropped"] == 25


@pytest.mark.parametrize(
    "option, message",
    [
        (["--deadline-ms", "-5"], "--deadline-ms -5 must be > 0"),
        (["--deadline-ms", "0"], "--deadline-ms 0 must be > 0"),
        (["--rate", "-1"], "--rate -1 must be ≥ 0"),
        (["--fps", "-1"], "--rate -1 must be ≥ 0"),  # the older spelling
        (["--reconnect-delay", "-1"], "--reconnect-delay -1 must be > 0 seconds"),
        (["--reconnect-attempts", "-2"], "--reconnect-attempts -2 must be ≥ 0"),
        (["--output", "a/", "--output", "file://b"], "one image folder at a time"),
        (["--output", "a.mp4", "--output", "b.avi"], "one video at a time"),
        (["--output", "display://0"], "shows a window; leave out --headless"),
        (["--output", "s3://bucket/x"], "unknown output 's3://bucket/x'"),
        (["--no-drop", "--deadline-ms", "50"], "--no-drop restores every frame, but --deadline-ms 50"),
    ],
)
def test_out_of_range_options_are_one_line_errors_before_the_run(tmp_path, capsys, option, message):
    from edgerestore.cli import main

    make_video(tmp_path / "clip.avi", 3)
    assert main(["camera", "--source", str(tmp_path / "clip.avi"), "--headless", *option]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgerestore camera: error: "), captured.err
    assert message in lines[0] and "frames" not in captured.out, captured.err


def test_a_too_small_image_in_a_folder_is_skipped_with_one_warning_line(tmp_path):
    import cv2

    (tmp_path / "in").mkdir()
    for name, shape in (("1.png", (20, 24, 3)), ("2.png", (5, 40, 3)), ("3.png", (24, 20, 3))):
        cv2.imwrite(str(tmp_path / "in" / name), np.full(shape, 90, np.uint8))
    proc = _camera(["--source", "in", "--headless", "--no-drop", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 in, 2 processed, 0 dropped" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "edgerestore camera: skipping in/2.png: 5x40 is too small; both sides must be at least 16 pixels"
    ], proc.stderr
    proc = _camera(["--source", "in", "--headless", "--no-drop", "--quiet", "--resize", "32x32"], tmp_path)
    assert proc.returncode == 0 and "3 in, 3 processed" in proc.stdout, proc.stderr


@pytest.mark.parametrize("record", ["/proc/x.mp4", "in/good.png/x.mp4", "out.mp4"])
def test_unwritable_record_path_is_a_one_line_error_before_the_run(tmp_path, record):
    make_video(tmp_path / "clip.avi", 5)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.png").write_bytes(b"x")
    (tmp_path / "out.mp4").mkdir()
    proc = _camera(
        ["--source", "clip.avi", "--headless", "--no-drop", "--output", record],
        tmp_path,
        timeout=30,
        FAKE_LATENCY_MS="30",
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgerestore camera: error: cannot write {record}"), (
        proc.stderr
    )
    assert "choose a writable --output" in lines[0]
    assert "frames" not in proc.stdout  # refused before the run started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "in", "out.mp4"]


def test_unwritable_summary_json_is_a_one_line_error_before_the_run(tmp_path):
    make_video(tmp_path / "clip.avi", 5)
    (tmp_path / "s.json").mkdir()
    for path in ("/proc/s.json", "s.json"):
        proc = _camera(["--source", "clip.avi", "--headless", "--summary-json", path], tmp_path, timeout=30)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines == [lines[0]] and lines[0].startswith(
            f"edgerestore camera: error: cannot write {path}: "
        )
        assert lines[0].endswith("; choose a writable --summary-json") and "frames" not in proc.stdout


def test_a_recording_that_fails_mid_run_stops_the_run_with_one_line(tmp_path):
    make_video(tmp_path / "clip.avi", 10)
    proc = _camera(
        ["--source", "clip.avi", "--headless", "--no-drop", "--record", "out.mp4"],
        tmp_path,
        timeout=30,
        FAKE_LATENCY_MS="20",
        FAKE_RECORD_FAIL_AFTER="2",
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("OpenCV")]
    assert lines == ["edgerestore camera: error: recording to out.mp4 failed: No space left on device"], (
        proc.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_without_a_display_the_window_falls_back_to_headless(tmp_path):
    make_video(tmp_path / "clip.avi", 8)
    proc = _camera(["--source", "clip.avi", "--max-frames", "5", "--no-drop"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no display (DISPLAY and WAYLAND_DISPLAY are not set); running headless" in proc.stderr
    assert "Traceback" not in proc.stderr and "5 processed" in proc.stdout


def _wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def _sigint_default() -> None:
    """Child processes get Ctrl-C back: a shell without job control starts background jobs with SIGINT ignored,
    children inherit that, and Python then leaves it ignored (a test run as `make test &` would hang)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    "sig, code, said", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_recording_is_a_valid_video_after_ctrl_c(tmp_path, sig, code, said):
    make_video(tmp_path / "clip.avi", 20)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, FAKES, "camera", "--source", "clip.avi", "--loop", "--headless", "--fps", "100"]
        + ["--record", str(out), "--record-view", "side-by-side"],
        cwd=tmp_path,
        env=_env(FAKE_LATENCY_MS="5"),
        preexec_fn=_sigint_default,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("bundle: "), first  # which bundle runs, before anything else
        first = proc.stdout.readline()  # the first status line: frames are flowing and being recorded
        assert "frames" in first, first + proc.stderr.read()
        time.sleep(0.3)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and f"interrupted ({said})" in stdout
    cap = cv2.VideoCapture(str(out))
    frames, shape = 0, None
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames, shape = frames + 1, image.shape
    cap.release()
    assert frames > 10 and shape == (64, 192, 3), (frames, shape)
    assert f"recording   {out} ({frames} frames)" in stdout
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]


# ------------------------------------------------------------------------------------- window under Xvfb


class _XImage(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
    ]


def _screenshot(display: str, width: int, height: int) -> np.ndarray | None:
    """The X root window as BGR (libX11 through ctypes; None if libX11 is missing)."""
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    x11 = ctypes.cdll.LoadLibrary(name)
    x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype, x11.XDefaultRootWindow.argtypes = ctypes.c_ulong, [ctypes.c_void_p]
    x11.XGetImage.restype = ctypes.POINTER(_XImage)
    x11.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int]
    x11.XGetImage.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x11.XFree.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        return None
    try:
        image = x11.XGetImage(dpy, x11.XDefaultRootWindow(dpy), 0, 0, width, height, 0xFFFFFFFF, 2)  # ZPixmap
        if not image or image.contents.bits_per_pixel != 32:
            return None
        bpl = image.contents.bytes_per_line
        raw = ctypes.string_at(image.contents.data, bpl * height)
        x11.XFree(ctypes.c_void_p(image.contents.data))
        return np.frombuffer(raw, np.uint8).reshape(height, bpl // 4, 4)[:, :width, :3].copy()
    finally:
        x11.XCloseDisplay(dpy)


@pytest.fixture
def xvfb():
    """A private Xvfb on a free display number (Xvfb picks it: -displayfd)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the window path is untested here")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# Known flake, not hidden: under Xvfb with no window manager, about 1 start in 7 on a loaded 2-core machine the
# Qt window stays unmapped (black screen, main thread inside cv2.waitKey) for the whole 30 s; a fresh start
# then works. Seen only under Xvfb; re-run up to twice so CI measures the overlay, not the race.
@pytest.mark.flaky(reruns=2)
def test_window_shows_the_overlay_under_a_virtual_display(tmp_path, xvfb):
    if ctypes.util.find_library("X11") is None:
        pytest.skip("libX11 is missing, so the test cannot take a screenshot")
    make_video(tmp_path / "clip.avi", 30, size=(320, 240))
    proc = subprocess.Popen(
        [sys.executable, FAKES, "camera", "--source", "clip.avi", "--loop", "--fps", "30"],
        cwd=tmp_path,
        env=_env(DISPLAY=xvfb, FAKE_LATENCY_MS="3"),
        preexec_fn=_sigint_default,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shots: list[np.ndarray] = []

    def overlay_visible() -> bool:
        shot = _screenshot(xvfb, 800, 600)
        if shot is None:
            return False
        shots.append(shot)
        green_text = (shot[..., 1] > 200) & (shot[..., 0] < 150) & (shot[..., 2] < 150)
        dark_box = (shot < 60).all(axis=2)
        return green_text.sum() > 30 and dark_box.sum() > 2000

    try:
        seen = _wait_for(overlay_visible, timeout=30, step=0.25)
        running = proc.poll() is None
        if running and not seen:
            proc.send_signal(signal.SIGUSR1)  # video_fakes dumps every thread's stack to stderr
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert running, f"the camera window exited early: {stderr}"
    assert shots, "no screenshot could be taken"
    if not seen:
        import cv2

        cv2.imwrite(str(tmp_path / "last_screenshot.png"), shots[-1])
    assert seen, f"no overlay on screen (see {tmp_path / 'last_screenshot.png'}); stderr: {stderr[-4000:]}"
    assert "running headless" not in stderr
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "interrupted" in stdout


def test_recording_onto_a_full_disk_exits_non_zero_in_one_line_and_leaves_no_file(tmp_path, tiny_tmpfs):
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(60):  # noise compresses badly: far more than 256 KiB of video
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8))
    out = tiny_tmpfs / "rec.mp4"
    proc = _camera(
        ["--source", "frames", "--headless", "--no-drop", "--fps", "0", "--record", str(out)], tmp_path
    )
    assert proc.returncode != 0, proc.stdout
    errors = [line for line in proc.stderr.strip().splitlines() if "error" in line]
    assert len(errors) == 1 and f"recording to {out} failed" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "recording   " not in proc.stdout
    assert list(tiny_tmpfs.iterdir()) == []


def test_output_uris_and_the_shared_io_flags(tmp_path):
    import cv2

    make_video(tmp_path / "clip.avi", 6, size=(96, 64))
    proc = _camera(
        ["--source", "file://clip.avi", "--headless", "--no-drop", "-q", "--size", "64x48"]
        + ["--output", "file://out.avi", "--output-codec", "mp4v"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    ok, frame = cap.read()
    codec = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert ok and frame.shape == (48, 64, 3) and frames == 6
    assert codec.upper() in ("FMP4", "MP4V")  # not MJPG, .avi's default


def test_an_image_folder_output_gets_one_png_per_processed_frame(tmp_path):
    import cv2

    make_video(tmp_path / "clip.avi", 5, size=(96, 64))
    proc = _camera(
        ["--source", "clip.avi", "--headless", "--no-drop", "-q", "--output", "file://frames"]
        + ["--output", "out.avi", "--record-view", "side-by-side"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert written == [f"{i:06d}.png" for i in range(1, 6)]
    assert cv2.imread(str(tmp_path / "frames" / "000001.png")).shape == (64, 192, 3)  # raw | restored
    assert (tmp_path / "out.avi").stat().st_size > 0
