"""The video package's façade, `video.run(source, restorer, options)`: outputs written off the inference
thread in order, no half recording when asked, the offscreen display side, and the prefetching pipeline
giving exactly what frame-by-frame calls give."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_fakes import FakeRestorer, make_video  # noqa: E402

from edgerestore.errors import UserError  # noqa: E402
from edgerestore.runtime import video  # noqa: E402


def test_run_records_a_video_and_an_image_folder_of_every_frame_in_order(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 9)
    seen: list[int] = []
    options = video.VideoOptions(
        drop_stale=False,
        on_result=[lambda r: seen.append(r.frame.index)],
        record=tmp_path / "out.avi",
        record_folder=tmp_path / "frames",
        status_every=0,
    )
    done = video.run(video.open_source(source=str(clip)), FakeRestorer(latency_ms=2), options)
    done.raise_error()
    s = done.summary
    assert seen == list(range(9)) and s.frames_out == 9 and s.frames_in == s.frames_out + s.dropped
    assert s.recording == str(tmp_path / "out.avi") and s.recorded_frames == 9
    assert video.count_video_frames(tmp_path / "out.avi") == 9
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:06d}.png" for i in range(1, 10)]


class _FailsAt(FakeRestorer):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def __call__(self, frame):
        if self.calls >= self.at:
            raise RuntimeError("the model failed")
        return super().__call__(frame)


def test_a_failure_without_keep_partial_leaves_no_recording(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 12)
    options = video.VideoOptions(
        drop_stale=False, record=tmp_path / "out.mp4", keep_partial=False, status_every=0
    )
    done = video.run(video.open_source(source=str(clip)), _FailsAt(5), options)
    with pytest.raises(RuntimeError, match="the model failed"):
        done.raise_error()
    assert done.summary.recording is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]
    s = done.summary
    assert s.frames_out == 5 and s.frames_in == s.frames_out + s.dropped


def test_a_failing_output_ends_the_run_with_its_error(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 12)
    (tmp_path / "frames").mkdir()

    def compose(result):
        if result.sequence == 3:
            raise UserError("cannot write frame 3")
        return result.image

    options = video.VideoOptions(
        drop_stale=False, record_folder=tmp_path / "frames", record_compose=compose, status_every=0
    )
    done = video.run(video.open_source(source=str(clip)), FakeRestorer(latency_ms=5), options)
    with pytest.raises(UserError, match="cannot write frame 3"):
        done.raise_error()
    s = done.summary
    assert s.frames_out < 12 and s.frames_in == s.frames_out + s.dropped


def test_the_offscreen_display_shows_each_new_result_once_in_order(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 10)
    shown: list[int] = []
    options = video.VideoOptions(
        drop_stale=False, offscreen=True, on_shown=lambda r: shown.append(r.sequence), status_every=0
    )
    done = video.run(video.open_source(source=str(clip)), FakeRestorer(latency_ms=3), options)
    done.raise_error()
    assert shown == sorted(set(shown)) and shown[-1] == done.summary.frames_out == 10


def test_the_prefetching_pipeline_gives_what_frame_by_frame_calls_give(tmp_path):
    from edgerestore.runtime.restorer import Restorer
    from edgerestore.testing import write_bundle

    bundle = write_bundle(tmp_path / "bundle", thumbnail_size=32, features=4)
    clip = make_video(tmp_path / "clip.avi", 14)
    with Restorer.open(bundle, video=True, threads=1) as r:
        expected = [r(frame) for frame in video.iter_video_frames(clip)]
    got: list[video.FrameResult] = []
    with Restorer.open(bundle, video=True, threads=1) as r:
        grabber = video.FrameGrabber(video.open_source(source=str(clip)), drop_stale=False)
        assert not video.RestorePipeline(grabber, r).prefetch  # by default only for TensorRT bundles
        pipeline = video.RestorePipeline(grabber, r, on_result=[got.append], prefetch=True)
        summary = video.run_loop(pipeline, video.LoopOptions(status_every=0))
        pipeline.raise_error()
    assert summary.frames_out == len(expected) == 14 and summary.dropped == 0
    assert [g.frame.index for g in got] == list(range(14))
    for g, e in zip(got, expected):
        assert g.condition == e.condition and np.array_equal(g.image, e.image)
        # its own time (the stages' sum), not the restorer's total, which also counts the wait behind another
        assert 0 < g.latency_ms <= g.timings["total"] + 1e-6


def test_prefetch_is_off_by_default_for_a_live_camera_and_a_restorer_that_cannot_queue(tmp_path):
    clip = make_video(tmp_path / "clip.avi", 3)
    live = video.FrameGrabber(video.open_source(source=str(clip)), drop_stale=True)
    assert not video.RestorePipeline(live, FakeRestorer()).prefetch
    kept = video.FrameGrabber(video.open_source(source=str(clip)), drop_stale=False)
    assert not video.RestorePipeline(kept, FakeRestorer()).prefetch
    live.source.close()
    kept.source.close()


def test_a_memory_source_hands_out_copies_paced_like_a_camera():
    frames = [np.full((16, 24, 3), i, np.uint8) for i in range(3)]
    src = video.MemorySource(frames, 5, rate=100.0)
    t0 = time.perf_counter()
    got = []
    while (f := src.read()) is not None:
        got.append(f)
    assert [int(f[0, 0, 0]) for f in got] == [0, 1, 2, 0, 1] and got[0] is not frames[0]
    assert time.perf_counter() - t0 >= 0.035 and src.fps == 100.0  # 5 frames at 100 FPS: 40 ms
