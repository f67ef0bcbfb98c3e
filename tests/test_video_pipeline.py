"""The capture → inference → display pipeline of edgerestore.runtime.video, with a FakeRestorer (no model)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from video_fakes import FakeRestorer, frame_level, make_video  # noqa: E402

from edgerestore.conditions import CONDITIONS  # noqa: E402
from edgerestore.errors import SourceError, UserError  # noqa: E402
from edgerestore.runtime import video  # noqa: E402


def _run(path: Path, restorer: FakeRestorer, *, drop: bool, max_frames: int = 0, collect: list | None = None):
    source = video.open_source(source=str(path))
    grabber = video.FrameGrabber(source, drop_stale=drop)
    callbacks = [collect.append] if collect is not None else []
    pipeline = video.RestorePipeline(grabber, restorer, max_frames=max_frames, on_result=callbacks)
    summary = video.run_loop(pipeline, video.LoopOptions(headless=True, status_every=0))
    pipeline.raise_error()
    return summary


def test_no_drop_mode_processes_every_frame_of_a_file_in_order(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 30)
    results: list[video.FrameResult] = []
    summary = _run(clip, FakeRestorer(latency_ms=2), drop=False, collect=results)
    assert (summary.frames_in, summary.frames_out, summary.dropped) == (30, 30, 0)
    assert [r.frame.index for r in results] == list(range(30))
    levels = [int(np.median(r.frame.image)) for r in results]
    assert all(abs(level - frame_level(i)) <= 4 for i, level in enumerate(levels)), levels
    assert all(r.restored and r.condition == "rain" for r in results)
    assert summary.conditions == {"rain": 30}
    assert summary.latency_ms["p50"] >= 2.0


def test_drop_mode_keeps_only_the_newest_frame_and_counts_the_rest(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 40)
    results: list[video.FrameResult] = []
    summary = _run(clip, FakeRestorer(latency_ms=15), drop=True, collect=results)
    assert summary.frames_in == 40
    assert summary.frames_in == summary.frames_out + summary.dropped
    assert summary.dropped > 0, "a model slower than decoding must make the grabber drop stale frames"
    indices = [r.frame.index for r in results]
    assert indices == sorted(indices) and indices[-1] == 39, "the last frame of the file is still processed"


def test_max_frames_stops_early_and_accounts_for_every_captured_frame(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 40)
    summary = _run(clip, FakeRestorer(latency_ms=1), drop=False, max_frames=7)
    assert summary.frames_out == 7
    assert summary.frames_in == summary.frames_out + summary.dropped
    assert summary.frames_in < 40, "capture stops with the pipeline"


class FlakySource(video.FrameSource):
    """A live source that delivers `first` frames, then fails; the next `failed_opens` reopen attempts fail."""

    live = True
    name = "flaky camera"

    def __init__(self, first: int, failed_opens: int) -> None:
        self.first, self.failed_opens = first, failed_opens
        self.opens, self.open_times, self.served = 0, [], 0

    def open(self) -> None:
        self.opens += 1
        self.open_times.append(time.monotonic())
        if 1 < self.opens <= 1 + self.failed_opens:
            raise SourceError("camera unplugged")

    def read(self):
        if self.opens == 1 and self.served >= self.first:
            return None  # the stream stops mid-way
        self.served += 1
        time.sleep(0.002)
        return np.full((32, 32, 3), self.served % 250, np.uint8)


def test_a_live_source_that_fails_mid_stream_is_reconnected_with_back_off(caplog):
    source = FlakySource(first=5, failed_opens=2)
    source.open()
    policy = video.ReconnectPolicy(initial_delay=0.02, factor=2.0, max_delay=1.0)
    grabber = video.FrameGrabber(source, reconnect=policy)
    pipeline = video.RestorePipeline(grabber, FakeRestorer(), max_frames=12)
    with caplog.at_level(logging.INFO, logger="edgerestore.video"):
        summary = video.run_loop(pipeline, video.LoopOptions(headless=True, status_every=0))
    assert summary.frames_out == 12 and summary.reconnects == 1
    assert source.opens == 4  # the first open, two failed reconnects, one that works
    gaps = np.diff(source.open_times[1:])
    assert gaps[1] > gaps[0] * 1.5, f"back-off must grow: {gaps}"
    text = caplog.text
    assert "lost: reconnecting (attempt 1" in text and "attempt 3" in text and "reconnected" in text
    assert grabber.status == ""
    assert summary.frames_in == summary.frames_out + summary.dropped


def test_reconnect_gives_up_after_max_attempts_and_reports_why():
    source = FlakySource(first=3, failed_opens=100)
    source.open()
    grabber = video.FrameGrabber(
        source, reconnect=video.ReconnectPolicy(initial_delay=0.001, max_attempts=3), drop_stale=False
    )
    pipeline = video.RestorePipeline(grabber, FakeRestorer())
    summary = video.run_loop(pipeline, video.LoopOptions(headless=True, status_every=0))
    assert summary.frames_out == 3 and summary.dropped == 0  # no-drop mode: a loaded machine drops nothing
    assert summary.error and "gave up after 3 reconnect attempts" in summary.error


def test_reconnect_delays_double_up_to_the_cap():
    policy = video.ReconnectPolicy(initial_delay=0.5, factor=2.0, max_delay=3.0)
    assert [policy.delay(a) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def _stats(**kw) -> video.LiveStats:
    base = dict(
        frames_in=10,
        frames_out=7,
        dropped=3,
        fps=24.5,
        latency_p50=12.3,
        latency_p99=20.9,
        condition="rain",
        confidence=0.9,
        forced=None,
        restoring=True,
        paused=False,
        status="",
        backend="onnxruntime",
        precision="int8",
    )
    base.update(kw)
    return video.LiveStats(**base)


def test_overlay_shows_condition_fps_latency_drops_backend_and_precision():
    text = " | ".join(t for t, _ in video.overlay_lines(_stats()))
    for part in (
        "rain 0.90 (auto)",
        "24.5 FPS",
        "p50 12.3 ms",
        "p99 20.9 ms",
        "dropped 3/10",
        "onnxruntime int8",
    ):
        assert part in text
    forced = video.overlay_lines(_stats(forced="haze", condition="haze", confidence=float("nan")))
    assert forced[0][0] == "haze (forced haze)"
    lost = video.overlay_lines(_stats(status="camera 0 lost: reconnecting (attempt 2, in 1.0 s)"))
    assert lost[-1] == ("camera 0 lost: reconnecting (attempt 2, in 1.0 s)", video.RED)
    image = np.full((240, 320, 3), 128, np.uint8)
    drawn = video.draw_overlay(image, _stats())
    assert np.array_equal(image, np.full((240, 320, 3), 128, np.uint8)), "the input is not modified"
    top_left = drawn[:60, :200].astype(int)
    assert (top_left < 50).all(axis=2).mean() > 0.3, "darkened box behind the text"
    green = (top_left[..., 1] > 200) & (top_left[..., 2] < 150)
    assert green.sum() > 20, "condition line drawn in green"


def test_keys_toggle_view_restoration_forced_condition_and_pause(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 5)
    fake = FakeRestorer()
    pipeline = video.RestorePipeline(video.FrameGrabber(video.open_source(source=str(clip))), fake)
    view = {"side": False}
    video.handle_key(ord("s"), pipeline, view)
    assert view["side"]
    video.handle_key(ord("r"), pipeline, view)
    assert pipeline.restoring is False
    for i, condition in enumerate(CONDITIONS, start=1):
        video.handle_key(ord(str(i)), pipeline, view)
        assert fake.force == condition and pipeline.forced == condition
    video.handle_key(ord("a"), pipeline, view)
    assert fake.force is None and pipeline.forced is None
    video.handle_key(ord("p"), pipeline, view)
    assert pipeline.paused
    assert video.handle_key(ord("q"), pipeline, view).quit
    assert video.handle_key(27, pipeline, view).quit
    assert not video.handle_key(-1, pipeline, view).quit
    pipeline.stop()


def test_restoration_off_passes_frames_through_without_calling_the_model(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 10)
    fake = FakeRestorer()
    grabber = video.FrameGrabber(video.open_source(source=str(clip)), drop_stale=False)
    pipeline = video.RestorePipeline(grabber, fake)
    pipeline.restoring = False
    summary = video.run_loop(pipeline, video.LoopOptions(headless=True, status_every=0))
    assert summary.frames_out == 10 and fake.calls == 0 and summary.not_restored == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "nope.mp4"}, "unknown source 'nope.mp4'"),
        ({"source": "ftp://host/x"}, "scheme 'ftp'"),
        ({"source": "3"}, "use --device 3"),
        ({"device": "/dev/no-such-camera"}, "does not exist"),
        ({}, "exactly one of"),
    ],
)
def test_unknown_sources_raise_one_line_errors(kwargs, message):
    with pytest.raises(UserError) as info:
        video.open_source(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_a_video_cannot_be_opened(tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open video"):
        video.open_source(source=str(bogus))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images found"):
        video.open_source(source=str(tmp_path / "empty"))


def test_image_folder_and_glob_sources_read_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((20, 24), i * 10, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"x")
    for spec in (str(tmp_path), str(tmp_path / "frame*.png")):
        src = video.open_source(source=spec)
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
        assert [int(f[0, 0, 0]) for f in frames][:3] == [10, 20, 100]
        assert all(f.shape == (20, 24, 3) for f in frames)


def test_image_folder_skips_too_small_images_with_a_warning_like_unreadable_ones(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "1.png"), np.full((20, 24, 3), 10, np.uint8))
    cv2.imwrite(str(tmp_path / "2.png"), np.full((15, 300, 3), 20, np.uint8))
    (tmp_path / "3.png").write_bytes(b"x")
    cv2.imwrite(str(tmp_path / "4.png"), np.full((16, 16, 3), 40, np.uint8))
    src = video.open_source(source=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="edgerestore"):
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [int(f[0, 0, 0]) for f in frames] == [10, 40]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings), warnings
    assert (
        warnings[0]
        == f"skipping {tmp_path / '2.png'}: 15x300 is too small; both sides must be at least 16 pixels"
    )
    assert warnings[1].startswith(f"skipping cannot read image {tmp_path / '3.png'}")


def test_recorder_finalises_a_playable_file_and_abort_leaves_nothing(tmp_path):
    out = tmp_path / "rec.mp4"
    with video.VideoRecorder(out, 10) as rec:
        for i in range(6):
            rec.write(np.full((48, 64, 3), i * 30, np.uint8))
        rec.write(np.zeros((50, 70, 3), np.uint8))  # another size: resized to the first
    assert video.count_video_frames(out) == 7
    rec = video.VideoRecorder(tmp_path / "gone.mp4", 10)
    rec.write(np.zeros((48, 64, 3), np.uint8))
    rec.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]


def test_mp4_recording_uses_a_codec_this_opencv_can_write():
    assert video.probe_fourcc(".mp4") in ("mp4v", "avc1")
    assert video.probe_fourcc(".avi") is not None


def test_a_recording_that_fails_mid_run_ends_the_loop_with_the_error(tmp_path, monkeypatch):
    import threading

    write_now = video.VideoRecorder._write_now

    def disk_full_after_two(self, image):
        if self.frames >= 2:
            raise OSError(28, "No space left on device")
        write_now(self, image)

    monkeypatch.setattr(video.VideoRecorder, "_write_now", disk_full_after_two)
    clip = make_video(tmp_path / "clip.avi", 12)
    grabber = video.FrameGrabber(video.open_source(source=str(clip)), drop_stale=False)
    pipeline = video.RestorePipeline(grabber, FakeRestorer(latency_ms=20))
    out = tmp_path / "rec.mp4"
    summaries: list[video.PipelineSummary] = []
    options = video.LoopOptions(headless=True, status_every=0, record=out)
    loop = threading.Thread(target=lambda: summaries.append(video.run_loop(pipeline, options)), daemon=True)
    loop.start()
    loop.join(timeout=20)
    assert not loop.is_alive(), "run_loop must end when the recording fails"
    with pytest.raises(UserError, match=r"recording to .*rec.mp4 failed: No space left on device"):
        pipeline.raise_error()
    summary = summaries[0]
    assert summary.recording is None and summary.frames_in == summary.frames_out + summary.dropped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_recorder_refuses_an_unwritable_or_non_folder_destination_up_front(tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="file.png is not a folder"):
        video.VideoRecorder(tmp_path / "file.png" / "x.mp4", 10)
    if Path("/proc").is_dir():
        with pytest.raises(UserError, match="cannot record to /proc/x.mp4: .*choose a writable folder"):
            video.VideoRecorder(Path("/proc/x.mp4"), 10)
    with pytest.raises(UserError, match="cannot write NOPE into .mp4"):
        video.VideoRecorder(tmp_path / "x.mp4", 10, fourcc="NOPE")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.png"]


class _SilentlyFailingWriter:
    """cv2.VideoWriter as it behaves on a full disk: opens, accepts every frame, reports nothing, but keeps
    only the first `keep` frames (the container then lacks the rest, or its index)."""

    keep = 3
    real = cv2.VideoWriter

    def __init__(self, path, fourcc, fps, size):
        self._inner = self.real(path, fourcc, fps, size)
        self._n = 0

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self._inner.isOpened()

    def write(self, image):
        self._n += 1
        if self._n <= self.keep:
            self._inner.write(image)

    def release(self):
        self._inner.release()


def test_a_recording_that_lost_frames_silently_is_an_error_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoWriter", _SilentlyFailingWriter)
    rec = video.VideoRecorder(tmp_path / "rec.mp4", 10, fourcc="mp4v")
    for i in range(8):
        rec.write(np.full((48, 64, 3), i * 30, np.uint8))
    with pytest.raises(
        UserError, match=r"recording to .*rec.mp4 failed: the written file holds 3 readable frames of 8"
    ):
        rec.close()
    assert list(tmp_path.iterdir()) == []


def test_recording_onto_a_full_disk_fails_in_one_line_and_leaves_no_file(tiny_tmpfs):
    rng = np.random.default_rng(0)
    rec = video.VideoRecorder(tiny_tmpfs / "rec.mp4", 25)
    with pytest.raises(UserError, match=r"recording to .*rec.mp4 failed: .*(No space left|disk full)"):
        try:
            for _ in range(60):  # ~60 x 20 KB of noise: far more than 256 KB
                rec.write(rng.integers(0, 255, size=(160, 200, 3), dtype=np.uint8))
        finally:
            rec.close()  # raises the failure (found while writing, or by reopening the file)
    assert list(tiny_tmpfs.iterdir()) == []


class OneFrameThenFailsSource(video.FrameSource):
    """A live source whose every (re)open works and delivers one frame before failing again (a regular
    file opened as a camera behaved like this)."""

    live = True
    name = "one-frame camera"

    def __init__(self) -> None:
        self.opens, self.open_times, self._left = 0, [], 0

    def open(self) -> None:
        self.opens += 1
        self.open_times.append(time.monotonic())
        self._left = 1

    def read(self):
        if self._left:
            self._left -= 1
            return np.zeros((32, 32, 3), np.uint8)
        return None


def test_a_source_that_fails_after_every_reopen_keeps_backing_off_and_gives_up():
    source = OneFrameThenFailsSource()
    source.open()
    policy = video.ReconnectPolicy(initial_delay=0.01, factor=2.0, max_delay=10.0, max_attempts=5)
    grabber = video.FrameGrabber(source, reconnect=policy, drop_stale=False)
    pipeline = video.RestorePipeline(grabber, FakeRestorer(), max_frames=30)  # ends even if it never gives up
    summary = video.run_loop(pipeline, video.LoopOptions(headless=True, status_every=0))
    gaps = np.diff(source.open_times)
    assert len(gaps) == 5 and gaps[-1] > 4 * gaps[0], f"the back-off must not reset: {gaps}"
    assert summary.error and "gave up after 5 reconnect attempts" in summary.error


def test_device_arguments_that_are_not_cameras_are_one_line_errors(tmp_path):
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(SourceError, match=r"--device .*photo.jpg is not a camera; .*--source"):
        video.open_source(device=str(image))
    with pytest.raises(SourceError, match="is not a camera"):
        video.open_source(device=str(tmp_path))
    with pytest.raises(SourceError, match="camera index 99999999999999999999 is out of range"):
        video.open_source(device="99999999999999999999")
