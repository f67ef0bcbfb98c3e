"""Restorer dispatch on ONNX Runtime with synthetic graphs whose verdict and output the tests control:
only the selected branch runs, clean frames pass through, hysteresis, routing cadence, forcing, the
deadline fails open, odd sizes round-trip, concurrent use equals serial use, CMUDRN bundles."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgerestore.errors import UserError
from edgerestore.runtime.restorer import Restorer
from edgerestore.testing import CMUDRN_OFFSET, OFFSETS, PROTOTYPES, write_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle"), depth=1)


@pytest.fixture
def restorer(bundle_dir):
    with Restorer.open(bundle_dir, threads=1) as r:
        yield r


def solid(condition: str, h: int = 40, w: int = 48) -> np.ndarray:
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = PROTOTYPES[condition]
    return frame


def textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 200, size=(h, w, 3), dtype=np.uint8)


def branch_offset(result_image: np.ndarray, frame: np.ndarray) -> int:
    return int(np.median(result_image.astype(int) - frame.astype(int)))


@pytest.mark.parametrize("condition", ["rain", "haze", "raindrop", "snow"])
def test_only_the_selected_branch_runs(restorer, condition):
    frame = solid(condition)
    result = restorer(frame)
    assert result.condition == condition and result.restored
    assert result.confidence > 0.9
    counts = restorer.backend.run_counts
    assert counts["router"] == 1 and counts["trunk"] == 1
    assert counts[f"branch_{condition}"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("branch_")) == 1
    assert branch_offset(result.image, frame) in (OFFSETS[condition], OFFSETS[condition] + 1)
    assert result.timings["trunk"] > 0 and result.timings["branch"] > 0
    assert (
        result.timings["total"]
        >= result.timings["router"] + result.timings["trunk"] + result.timings["branch"]
    )


def test_clean_frame_returns_the_input_untouched_without_trunk(restorer):
    frame = solid("clean")
    result = restorer(frame)
    assert result.condition == "clean" and not result.restored and "clean" in result.flags
    assert result.image is frame
    assert restorer.backend.run_counts == {"router": 1}
    assert result.timings["trunk"] == 0 and result.timings["branch"] == 0 and result.timings["router"] > 0


def test_router_only_and_force(restorer):
    restorer.router_only = True
    result = restorer(solid("snow"))
    assert result.condition == "snow" and not result.restored and "router_only" in result.flags
    restorer.router_only = False
    restorer.force = "haze"
    frame = solid("rain")
    result = restorer(frame)
    assert result.condition == "haze" and "forced" in result.flags and np.isnan(result.confidence)
    assert branch_offset(result.image, frame) in (OFFSETS["haze"], OFFSETS["haze"] + 1)
    restorer.force = "clean"
    assert restorer(frame).image is frame
    assert restorer.backend.run_counts == {"router": 1, "trunk": 1, "branch_haze": 1}
    restorer.force = "fog"
    with pytest.raises(UserError, match="not a condition"):
        restorer(frame)


def test_hysteresis_holds_through_one_outlier_frame(bundle_dir):
    with Restorer.open(bundle_dir, threads=1, video=True, dwell=3) as r:
        sequence = ["rain"] * 4 + ["haze"] + ["rain"] * 3
        results = [r(solid(c)) for c in sequence]
        assert [x.condition for x in results] == ["rain"] * len(sequence)
        assert "smoothed" in results[4].flags
        assert r.backend.run_counts["branch_haze"] == 0
        # a real change wins after `dwell` consecutive frames
        switched = [r(solid("haze")).condition for _ in range(3)]
        assert switched == ["rain", "rain", "haze"]


def test_confidence_margin_switches_at_once(bundle_dir):
    with Restorer.open(bundle_dir, threads=1, video=True, dwell=5, margin=0.5) as r:
        assert r(solid("rain")).condition == "rain"
        assert r(solid("haze")).condition == "haze"


def test_route_every_n_frames_reuses_the_verdict(bundle_dir):
    with Restorer.open(bundle_dir, threads=1, video=True, route_every=3) as r:
        results = [r(solid("snow")) for _ in range(7)]
        assert r.backend.run_counts["router"] == 3  # frames 0, 3, 6
        assert all(x.condition == "snow" for x in results)
        assert "route_skipped" in results[1].flags and "route_skipped" not in results[3].flags


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (31, 16), (101, 77), (64, 33)])
def test_odd_sizes_round_trip_exactly(restorer, rng, hw):
    restorer.force = "rain"
    frame = textured(rng, *hw)
    result = restorer(frame)
    assert result.image.shape == frame.shape and result.image.dtype == np.uint8
    diff = result.image.astype(int) - frame.astype(int)
    assert set(np.unique(diff)) <= {OFFSETS["rain"], OFFSETS["rain"] + 1}  # aligned: no shift from the crop
    assert ("padded" in result.flags) == (hw[0] % 2 == 1 or hw[1] % 2 == 1)


def test_frame_beyond_the_bundle_max_shape_runs_in_tiles(tmp_path):
    with Restorer.open(write_bundle(tmp_path, max_hw=(64, 96)), threads=1) as r:
        assert "tiled" not in r(solid("rain", 64, 96)).flags
        result = r(solid("rain", 65, 40))  # more tests in test_runtime_tiles.py
        assert "tiled" in result.flags and result.image.shape == (65, 40, 3)


def _slow_trunk(restorer: Restorer, delay) -> object:
    """Make the trunk graph of `restorer`'s backend call `delay()` before it runs; returns the original `run`."""
    run = restorer.backend.run

    def slow_run(graph, out_shapes=None):
        if graph == "trunk":
            delay()
        return run(graph, out_shapes)

    restorer.backend.run = slow_run
    return run


def test_deadline_fails_open_with_the_raw_frame(bundle_dir):
    with Restorer.open(bundle_dir, threads=1, deadline_ms=1000) as r:
        frame = solid("rain")
        assert r(frame).restored  # within budget: the normal result
        release = threading.Event()
        run = _slow_trunk(r, lambda: release.wait(5))
        r.deadline_ms = 30
        t0 = time.perf_counter()
        late = r(frame)
        assert (time.perf_counter() - t0) < 0.5
        assert late.image is frame and not late.restored and "deadline_missed" in late.flags
        busy = r(frame)  # the late frame still occupies the worker: fail open at once
        assert busy.image is frame and {"deadline_missed", "busy"} <= busy.flags
        release.set()
        r.backend.run = run
        r.deadline_ms = 1000
        deadline = time.time() + 5
        while r._thread.inflight is not None and not r._thread.inflight.done() and time.time() < deadline:
            time.sleep(0.01)
        healthy = r(frame)
        assert healthy.restored and healthy.condition == "rain"
        assert r.stats.deadline_missed == 2 and r.stats.late_dropped == 1


def test_two_threads_give_the_same_results_as_serial_use(bundle_dir, rng):
    frames = []
    for i, c in enumerate(["rain", "clean", "haze", "snow", "raindrop"] * 4):
        f = solid(c, 32 + i, 40 + 3 * i)
        f[::3] = rng.integers(0, 200, size=f[::3].shape, dtype=np.uint8)  # texture, same mean class
        frames.append(f)
    with Restorer.open(bundle_dir, threads=1) as r:
        serial = [r(f) for f in frames]
        out: dict[int, object] = {}

        def worker(indices):
            for i in indices:
                out[i] = r(frames[i])

        threads = [threading.Thread(target=worker, args=(range(k, len(frames), 2),)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(out) == len(frames)
    for i, ref in enumerate(serial):
        got = out[i]
        assert got.condition == ref.condition and got.restored == ref.restored
        np.testing.assert_array_equal(got.image, ref.image)


def test_submit_result_and_stream_keep_order(bundle_dir):
    conditions = ["rain", "haze", "clean", "snow", "raindrop", "rain"]
    frames = [solid(c, 20 + 2 * i, 30) for i, c in enumerate(conditions)]
    with Restorer.open(bundle_dir, threads=1) as r:
        for f in frames:
            r.submit(f)
        got = [r.result(timeout=10) for _ in frames]
        assert [x.condition for x in got] == conditions
        assert [x.image.shape for x in got] == [f.shape for f in frames]
        streamed = list(r.stream(iter(frames), depth=3))
        assert [x.condition for x in streamed] == conditions
        assert [x.index for x in streamed] == sorted(x.index for x in streamed)
        with pytest.raises(UserError, match="submit"):
            r.result()


def test_cmudrn_bundle_runs_its_one_graph_on_every_frame(tmp_path, rng):
    with Restorer.open(write_bundle(tmp_path, family="cmudrn", loops=3), threads=1) as r:
        frame = textured(rng, 21, 35)
        result = r(frame)
        assert result.restored and result.condition == "blind"
        np.testing.assert_array_equal(result.image, frame + CMUDRN_OFFSET)
        assert r(solid("clean")).restored
        assert r.backend.run_counts == {"cmudrn_t3": 2}


def test_reduced_resolution_branch_runs_on_the_downscaled_frame_and_adds_its_correction(tmp_path, rng):
    bundle = write_bundle(tmp_path / "b", depth=1, branch_scales={"haze": 0.25})
    frame = np.clip(solid("haze", 120, 200).astype(int) + rng.integers(-8, 9, (120, 200, 3)), 0, 255)
    frame = frame.astype(np.uint8)
    with Restorer.open(bundle, threads=1) as r:
        shapes = []
        bind = r.backend.bind_input

        def recording_bind(graph, tensor, value):
            if graph == "trunk":
                shapes.append((graph, value.shape))
            bind(graph, tensor, value)

        r.backend.bind_input = recording_bind  # type: ignore[method-assign]
        result = r(frame)
        assert result.condition == "haze" and "reduced" in result.flags
        assert shapes == [("trunk", (1, 30, 50, 3))]  # 120x200 at 1/4
        # the synthetic branch adds 20 + a fraction at the reduced size; upsampled, that is 20..21 everywhere
        assert result.image.shape == frame.shape
        delta = result.image.astype(int) - frame.astype(int)
        assert delta.min() >= 20 and delta.max() <= 21
        rain = r(solid("rain", 120, 200))  # other branches stay at full resolution
        assert "reduced" not in rain.flags and shapes[-1] == ("trunk", (1, 120, 200, 3))
        small = r(solid("haze", 18, 40))  # sides stop at 16 pixels
        assert "reduced" in small.flags and shapes[-1] == ("trunk", (1, 16, 16, 3))
        assert small.image.shape == (18, 40, 3)
        tiny = r(solid("haze", 16, 16))  # already at the smallest side: runs at its own size
        assert "reduced" not in tiny.flags and shapes[-1] == ("trunk", (1, 16, 16, 3))


def test_reduced_branch_results_do_not_share_the_kept_work_images(tmp_path, rng):
    """The guided composition keeps its full-size work images between frames; each result is its own array."""
    bundle = write_bundle(tmp_path / "b", depth=1, branch_scales={"haze": 0.25})
    frames = [
        np.clip(solid("haze", 120, 200).astype(int) + rng.integers(-40, 41, (120, 200, 3)), 0, 255).astype(
            np.uint8
        )
        for _ in range(2)
    ]
    with Restorer.open(bundle, threads=1) as r:
        first = r(frames[0]).image
        kept = first.copy()
        second = r(frames[1]).image
        again = r(frames[0]).image
        assert np.array_equal(first, kept), "a later frame must not write into an earlier result"
        assert not np.array_equal(first, second) and np.array_equal(first, again)
        assert r(solid("haze", 80, 96)).image.shape == (80, 96, 3)  # another size: new work images


def test_overhead_measures_a_reduced_branch_against_the_graphs_it_really_runs(tmp_path):
    from edgerestore.measure.overhead import dispatch_costs, trunk_and_branch_ms

    bundle = write_bundle(tmp_path / "b", depth=1, branch_scales={"haze": 0.25})
    frames = {c: solid(c, 240, 320) for c in PROTOTYPES}
    with Restorer.open(bundle, threads=1) as r:
        report = dispatch_costs(r, frames, reps=3)
    assert set(report.stages) == {"router", "trunk", "trunk@branch_haze"} | {f"branch_{c}" for c in OFFSETS}
    assert report.stages["trunk@branch_haze"] < report.stages["trunk"]  # 60x80 instead of 240x320
    assert trunk_and_branch_ms(report.stages, "branch_haze") == pytest.approx(
        report.stages["trunk@branch_haze"] + report.stages["branch_haze"]
    )
    assert set(report.routed) == {f"branch_{c}" for c in OFFSETS} and report.clean_how == "router says clean"
    assert all(v > 0 for v in report.routed_ratio.values())


def test_measuring_reads_the_restorer_through_its_public_accessors(tmp_path):
    """What edgerestore.measure needs of a Restorer (threads, the padded frame, a reduced branch's frame, the
    trunk's output shapes) is public and is what the restorer itself runs."""
    import cv2

    bundle = write_bundle(tmp_path / "b", features=4, branch_scales={"haze": 0.25})
    frame = textured(np.random.default_rng(0), 97, 128)
    with Restorer.open(bundle, threads=1) as r:
        assert r.threads == 1
        padded = r.padded_frame(frame)
        assert padded.shape == (1, 98, 128, 3) and np.array_equal(padded[0, :97], frame)
        assert r.reduced_frame(frame, "rain") is None  # full resolution
        # a quarter of each side (contract.reduced_size), area-averaged
        small = r.reduced_frame(frame, "haze")
        assert np.array_equal(small, cv2.resize(frame, (32, 24), interpolation=cv2.INTER_AREA))
        assert r.trunk_outputs(98, 128) == {"features": (1, 4, 49, 64)}
        shapes = []
        bind = r.backend.bind_input
        r.backend.bind_input = lambda g, t, v: (shapes.append((g, t, tuple(v.shape))), bind(g, t, v))[1]
        r.force = "haze"
        r(frame)
        assert ("trunk", "frame", r.padded_frame(small).shape) in shapes  # what the accessors describe runs
    with Restorer.open(bundle) as default:
        assert default.threads == 0  # ONNX Runtime's default (one per physical core), not a guess
    with Restorer.open(write_bundle(tmp_path / "c", family="cmudrn")) as blind:
        assert blind.trunk_outputs(16, 16) is None


def test_forced_frames_skip_the_thumbnail_and_a_late_unforce_still_routes(restorer):
    frame = solid("snow")
    restorer.force = "rain"
    prep = restorer._prepare(frame)
    assert prep.thumbnail is None  # the router will not run: no INTER_AREA thumbnail either
    restorer.force = None  # options may change between submit() and inference
    result = restorer._infer(prep)
    assert result.condition == "snow" and "forced" not in result.flags


@pytest.mark.parametrize(
    "options, message",
    [
        ({"deadline_ms": -5}, "deadline_ms=-5"),
        ({"deadline_ms": 0}, "deadline_ms=0"),
        ({"route_every": 0}, "route_every=0"),
    ],
)
def test_out_of_range_options_are_one_line_user_errors(bundle_dir, options, message):
    with pytest.raises(UserError, match=message) as exc:
        Restorer.open(bundle_dir, threads=1, **options)
    assert "\n" not in str(exc.value)


def test_stats_count_only_delivered_results_and_a_slow_branch_is_warned_about(bundle_dir, caplog):
    """A late result is thrown away: it is not counted as restored; the branch slower than the deadline is
    named once in a warning."""
    with Restorer.open(bundle_dir, threads=1, deadline_ms=1000) as r:
        frame = solid("rain")
        _slow_trunk(r, lambda: time.sleep(0.15))
        r.deadline_ms = 40
        with caplog.at_level("WARNING", logger="edgerestore.restorer"):
            results = []
            for _ in range(3):
                results.append(r(frame))
                time.sleep(0.2)  # the late frame finishes before the next one
            r.close()  # waits for the last late frame
        assert not any(x.restored for x in results)
        assert r.stats.frames == 3 and r.stats.restored == 0 and r.stats.deadline_missed == 3
        assert r.stats.late_dropped == 3 and r.stats.per_condition == {}
        warnings = [rec.getMessage() for rec in caplog.records if "deadline_ms=40" in rec.getMessage()]
        assert len(warnings) == 1 and "rain" in warnings[0], warnings


def test_calls_after_close_are_one_line_user_errors_from_every_entry_point(bundle_dir):
    r = Restorer.open(bundle_dir, threads=1)
    assert r(solid("rain")).restored
    r.close()
    r.close()  # twice is harmless
    for call in (
        lambda: r(solid("rain")),
        lambda: r.submit(solid("rain")),
        lambda: list(r.stream([solid("rain")])),
    ):
        with pytest.raises(UserError, match="closed"):
            call()
    r.deadline_ms = 50
    with pytest.raises(UserError, match="closed"):
        r(solid("rain"))


def test_closing_while_other_threads_restore_gives_results_or_user_errors_only(bundle_dir):
    r = Restorer.open(bundle_dir, threads=1)
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def worker():
        started.wait()
        for _ in range(200):
            try:
                r(solid("snow"))
            except UserError:
                pass
            except BaseException as exc:  # KeyError('trunk') before the fix
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.02)
    r.close()
    for t in threads:
        t.join()
    assert errors == []


def test_cmudrn_refuses_force_and_router_only_instead_of_ignoring_them(tmp_path):
    bundle = write_bundle(tmp_path, family="cmudrn", loops=3)
    for option in ({"force": "rain"}, {"router_only": True}):
        with pytest.raises(UserError, match="blind CMUDRN"):
            Restorer.open(bundle, threads=1, **option)
    with Restorer.open(bundle, threads=1) as r:
        r.force = "snow"
        with pytest.raises(UserError, match="force='snow'.*blind CMUDRN"):
            r(solid("snow"))
        r.force, r.router_only = None, True
        with pytest.raises(UserError, match="router_only"):
            r(solid("snow"))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("thumbnail_size", 160, "manifest thumbnail_size 160 but the router graph takes 32x32"),
        ("stride", 3, "manifest stride 3"),
    ],
)
def test_a_manifest_value_the_graphs_contradict_is_refused_in_one_line(tmp_path, field, value, message):
    import json

    from edgerestore.errors import BundleError

    bundle = write_bundle(tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text())
    raw[field] = value
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message) as excinfo:
        Restorer.open(bundle, threads=1)
    assert "edited" in str(excinfo.value) and "\n" not in str(excinfo.value)
