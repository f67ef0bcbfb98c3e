"""`evaluate` and `edgerestore eval` with fake restorers on tiny paired sets built here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerestore.cli import main
from edgerestore.conditions import CONDITIONS
from edgerestore.data.pairs import find_sets
from edgerestore.evaluation import evaluate, write_report
from edgerestore.restorers import identity_restorer


def _make_set(root: Path, n: int, seed: int, haze: bool = False) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:40]
    for i in range(n):
        target = np.stack([xx * 5 + i * 7, yy * 6, (xx + yy) * 3], axis=2).astype(np.uint8)
        if haze:
            degraded = (0.5 * target + 0.5 * 220).astype(np.uint8)
        else:
            degraded = np.clip(target + rng.normal(0, 20, target.shape), 0, 255).astype(np.uint8)
        (root / "input").mkdir(parents=True, exist_ok=True)
        (root / "target").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "input" / f"{i}.png"), degraded)
        cv2.imwrite(str(root / "target" / f"{i}.png"), target)


@pytest.fixture
def data(tmp_path):
    _make_set(tmp_path / "dev" / "rain_small", 3, 0)
    _make_set(tmp_path / "dev" / "sots_small", 2, 1, haze=True)
    real = tmp_path / "real"
    for cond, k in (("snow", 2), ("haze", 1)):
        (real / cond).mkdir(parents=True)
        for i in range(k):
            cv2.imwrite(str(real / cond / f"{i}.jpg"), np.full((24, 24, 3), 90 + i, np.uint8))
    return tmp_path


def test_identity_restorer_output_scores_equal_input_scores(data):
    report = evaluate(identity_restorer, find_sets(data / "dev"), progress=False)
    for s in report.sets:
        assert s.output == s.input
        assert s.router_accuracy is None
    assert sum(map(sum, report.confusion)) == 0


def test_oracle_restorer_scores_infinite_psnr_and_ssim_one(data):
    sets = find_sets(data / "dev")
    truth = {}
    for s in sets:
        for p in s.pairs:
            truth[cv2.imread(str(p.input)).tobytes()] = cv2.imread(str(p.target))

    def oracle(frame):
        return truth[frame.tobytes()], None, None

    report = evaluate(oracle, sets, progress=False, baselines=False)
    for s in report.sets:
        assert math.isinf(s.output["psnr_rgb"]) and math.isinf(s.output["psnr_y"])
        assert s.output["ssim_rgb"] == 1.0 and s.output["ssim_y"] == 1.0
        assert s.input["psnr_rgb"] < 40


def test_confusion_matrix_counts_expected_against_predicted(data):
    def always_rain(frame):
        probs = np.array([0.1, 0.6, 0.1, 0.1, 0.1])
        return frame, "rain", probs

    report = evaluate(
        always_rain, find_sets(data / "dev"), real=[data / "real"], progress=False, baselines=False
    )
    c = np.array(report.confusion)
    rain, haze, snow = (CONDITIONS.index(x) for x in ("rain", "haze", "snow"))
    assert c[rain, rain] == 3 and c[haze, rain] == 2 + 1 and c[snow, rain] == 2
    assert c.sum() == 8 and c[:, rain].sum() == 8
    acc = {s.name: s.router_accuracy for s in report.sets}
    assert acc == {
        "rain_small": 1.0,
        "sots_small": 0.0,
        "real/haze": 0.0,
        "real/snow": 0.0,
        "clean/targets": 0.0,  # the clean targets are routed too, outside the confusion matrix
    }
    assert report.router_accuracy == pytest.approx(3 / 8)
    low, high = report.to_json()["router_accuracy_ci95"]
    assert 0.0 < low < 3 / 8 < high < 1.0 and high - low > 0.4  # 8 images say little, and the report says so
    assert f"{low:.0%}–{high:.0%}" in report.to_markdown()
    assert report.sets[0].images[0].confidence == pytest.approx(0.6)


def test_clean_targets_are_routed_once_each_and_reported_apart(data):
    sets = find_sets(data / "dev")
    targets = {cv2.imread(str(p.target)).tobytes() for s in sets for p in s.pairs}
    assert len(targets) == 3  # the two sets share their targets' pictures

    def clean_when_clean(frame):
        verdict = "clean" if frame.tobytes() in targets and frame[0, 0, 0] != 0 else "rain"
        return (frame if verdict == "clean" else frame ^ 1), verdict, np.full(5, 0.2)

    report = evaluate(clean_when_clean, sets, progress=False, baselines=False)
    clean = report.sets[-1]
    assert (clean.name, clean.kind, clean.n) == ("clean/targets", "clean", 3)
    assert clean.router_accuracy == pytest.approx(2 / 3)  # target 0 starts with a black pixel: "rain"
    assert sum(map(sum, report.confusion)) == 5  # the degraded inputs only
    assert "| 3 | 66.7% | 66.7% | rain 1 |" in report.to_markdown()  # routed clean; left alone bit for bit
    assert clean.untouched == 2
    blind = evaluate(identity_restorer, sets, progress=False, baselines=False)
    assert [s.kind for s in blind.sets] == ["paired", "paired"]  # nothing to route: no clean check


def test_a_routed_restorer_on_sets_of_unknown_condition_is_not_called_blind(data, tmp_path):
    import shutil

    shutil.copytree(data / "dev" / "rain_small", tmp_path / "evo2")
    report = evaluate(lambda f: (f, "rain", None), find_sets(tmp_path / "evo2"), progress=False)
    assert report.sets[0].condition is None and sum(map(sum, report.confusion)) == 0
    text = report.to_markdown()
    assert "blind model" not in text
    assert "The restorer names conditions, but no degraded image has a known one" in text
    blind = evaluate(identity_restorer, find_sets(tmp_path / "evo2"), progress=False).to_markdown()
    assert "The restorer names no condition (blind model): no router accuracy." in blind


def test_a_blind_bundle_names_no_condition(data, tmp_path):
    from edgerestore.restorers import bundle_restorer
    from edgerestore.testing import write_bundle

    restore, _ = bundle_restorer(write_bundle(tmp_path / "cmudrn", family="cmudrn"))
    report = evaluate(restore, find_sets(data / "dev"), real=[data / "real"], progress=False)
    assert [s.name for s in report.sets] == ["rain_small", "sots_small", "real/haze", "real/snow"]
    assert all(r.predicted is None for s in report.sets for r in s.images)
    assert all(s.router_accuracy is None for s in report.sets)


def test_dcp_baseline_is_scored_on_haze_sets_only(data):
    report = evaluate(identity_restorer, find_sets(data / "dev"), progress=False)
    by_name = {s.name: s for s in report.sets}
    assert by_name["rain_small"].dcp is None
    assert by_name["sots_small"].dcp is not None


def test_report_files_and_samples_are_written(data, tmp_path):
    out = tmp_path / "out"
    report = evaluate(
        identity_restorer, find_sets(data / "dev"), real=[data / "real"], out_dir=out, samples_per_set=2,
        progress=False,
    )  # fmt: skip
    md, js = write_report(report, out)
    text = md.read_text()
    assert "| rain_small | rain | 3 | input |" in text and "DCP" in text
    parsed = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert [s["name"] for s in parsed["sets"]] == ["rain_small", "sots_small", "real/haze", "real/snow"]
    assert parsed["sets"][0]["n"] == 3 and len(parsed["sets"][0]["images"]) == 3
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == [
        "rain_small__0.png", "rain_small__1.png", "real_haze__0.png", "real_snow__0.png", "real_snow__1.png",
        "sots_small__0.png", "sots_small__1.png",
    ]  # fmt: skip
    side = cv2.imread(str(out / "samples" / "rain_small__0.png"))
    assert side.shape[1] == 3 * 40  # input | output | target


def test_infinite_psnr_is_written_as_a_string_in_json(data, tmp_path):
    sets = find_sets(data / "dev" / "rain_small")
    targets = [cv2.imread(str(p.target)) for p in sets[0].pairs]
    calls = iter(targets)
    report = evaluate(lambda f: (next(calls), None, None), sets, progress=False)
    _, js = write_report(report, tmp_path / "o")
    assert json.loads(js.read_text())["sets"][0]["output"]["psnr_rgb"] == "inf"


def test_restorer_returning_a_wrong_shape_is_rejected(data):
    with pytest.raises(ValueError, match="restorer returned"):
        evaluate(lambda f: (f[:-1], None, None), find_sets(data / "dev"), progress=False)


def test_eval_command_writes_report_and_exits_zero(data, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev"), "--real", str(data / "real"),
                 "--out", str(out), "--quiet", "--no-baselines", "--max-images", "1"])  # fmt: skip
    assert code == 0
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["sets"][0]["n"] == 1
    assert "wrote" in capsys.readouterr().out


def test_eval_command_user_errors_are_one_line(data, tmp_path, capsys):
    assert main(["eval", "--baseline", "identity", "--out", str(tmp_path / "o")]) == 2
    assert main(["eval", "--baseline", "identity", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("edgerestore eval: error:") for line in err)


@pytest.mark.parametrize("n", ["0", "-3"])
def test_eval_max_images_below_one_is_a_one_line_error(data, tmp_path, capsys, n):
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev"), "--max-images", n,
                 "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"edgerestore eval: error: --max-images {n} must be ≥ 1 (leave it out to evaluate every image)"
    ]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--samples", "-1"], "--samples -1 must be ≥ 0 (0: no side-by-side images)"),
        (["--threads", "-2"], "--threads -2 must be ≥ 0 (0: torch's default)"),
    ],
)
def test_eval_negative_counts_are_one_line_errors(data, tmp_path, capsys, option, message):
    """--threads -2 used to reach torch.set_num_threads and end in a traceback."""
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev"), *option,
                 "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"edgerestore eval: error: {message}"]
    assert not (tmp_path / "o").exists()


def test_eval_command_condition_prefix_overrides_the_guess(data, tmp_path):
    out = tmp_path / "o"
    assert main(["eval", "--baseline", "identity", "--data", f"snow={data / 'dev' / 'rain_small'}",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert json.loads((out / "report.json").read_text())["sets"][0]["condition"] == "snow"


def test_checkpoint_restorer_runs_uffn_and_blind_cmudrn_checkpoints(data, tmp_path):
    pytest.importorskip("torch")
    from edgerestore.models.zoo import build, save_checkpoint
    from edgerestore.restorers import checkpoint_restorer

    frame = cv2.imread(str(data / "dev" / "rain_small" / "input" / "0.png"))[
        :31, :37
    ]  # odd size: padded inside
    for profile, routed in (("uffn-tiny", True), ("cmudrn-t3", False)):
        path = save_checkpoint(tmp_path / f"{profile}.pt", build(profile), profile)
        restore, name = checkpoint_restorer(path)
        out, condition, probs = restore(frame)
        assert out.shape == frame.shape and out.dtype == np.uint8 and profile in name
        if routed:
            assert (
                condition in CONDITIONS
                and probs.shape == (5,)
                and probs.sum() == pytest.approx(1.0, abs=1e-5)
            )
        else:
            assert condition is None and probs is None


def test_checkpoint_eval_routes_on_the_runtime_thumbnail_and_runs_the_branch_it_picked(data, tmp_path):
    torch = pytest.importorskip("torch")
    from edgerestore.contract import router_thumbnail
    from edgerestore.models.zoo import build, save_checkpoint
    from edgerestore.restorers import checkpoint_restorer

    torch.manual_seed(0)
    model = build("uffn-tiny").eval()
    frame = cv2.imread(str(data / "dev" / "rain_small" / "input" / "0.png"))
    restore, _ = checkpoint_restorer(save_checkpoint(tmp_path / "m.pt", model, "uffn-tiny"))
    out, condition, probs = restore(frame)
    thumb = router_thumbnail(frame, model.thumbnail_size)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    with torch.inference_mode():
        logits = model.router(torch.from_numpy(thumb.copy()).float()[None])
        chosen = logits.argmax(1)
        x = torch.from_numpy(frame[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255.0
        expected = model(x, chosen)[0][0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert condition == CONDITIONS[int(chosen)]
    assert np.allclose(probs, torch.softmax(logits, 1)[0].numpy(), atol=1e-6)
    assert np.array_equal(out, expected[:, :, ::-1])


def test_eval_command_unwritable_out_is_one_line_before_any_work(data, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    outs = [tmp_path / "a_file" / "evo", tmp_path / "a_file"] + (
        [Path("/proc/evo")] if Path("/proc").is_dir() else []
    )
    for out in outs:
        code = main(
            ["eval", "--baseline", "identity", "--data", str(data / "dev"), "--out", str(out), "--quiet"]
        )
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"edgerestore eval: error: cannot write {out}: "), err
        assert err[0].endswith("; choose a writable --out")


def test_eval_crop_border_too_large_for_ssim_is_one_line_naming_the_image(data, tmp_path, capsys):
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev"), "--crop-border", "100",
                 "--out", str(tmp_path / "o"), "--quiet", "--no-baselines"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgerestore eval: error: "), err
    assert str(data / "dev" / "rain_small" / "input" / "0.png") in err[0] and "--crop-border" in err[0], err


def test_eval_size_mismatch_names_both_files_with_their_folders(data, tmp_path, capsys):
    target = data / "dev" / "rain_small" / "target" / "1.png"
    cv2.imwrite(str(target), np.zeros((50, 70, 3), np.uint8))
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev" / "rain_small"),
                 "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data / "dev" / "rain_small" / "input" / "1.png") in err[0], err
    assert f"its target {target} is 70×50" in err[0], err
    assert not (tmp_path / "o").exists(), "the sample of 0.png, written before 1.png failed, is removed"


def test_eval_failing_late_removes_only_the_samples_it_wrote(data, tmp_path, capsys):
    out = tmp_path / "o"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "old.png").write_bytes(b"from an earlier run")
    (data / "dev" / "sots_small" / "target" / "1.png").write_bytes(b"not a png")
    code = main(["eval", "--baseline", "identity", "--data", str(data / "dev"), "--out", str(out), "--quiet"])
    assert code == 2
    assert "sots_small/target/1.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["old.png", "samples"]


def test_restorer_user_errors_name_the_image(data):
    from edgerestore.errors import UserError

    def refuse(frame):
        raise UserError("frame of 7x1001 is too small; both sides must be at least 8 pixels")

    with pytest.raises(UserError, match=r"^.*rain_small/input/0\.png: frame of 7x1001 is too small"):
        evaluate(refuse, find_sets(data / "dev" / "rain_small"), progress=False)


def test_a_bundle_is_evaluated_on_images_beyond_its_max_shape(tmp_path):
    """A photograph larger than the bundle's max shape runs in tiles; the evaluation does not abort."""
    from edgerestore.restorers import bundle_restorer
    from edgerestore.testing import write_bundle

    root = tmp_path / "dev" / "big_rain"
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(150, 200), (300, 410)]):
        target = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "target" / f"{i}.png"), target)
        cv2.imwrite(str(root / "input" / f"{i}.png"), target // 2)
    restore, _ = bundle_restorer(write_bundle(tmp_path / "b", family="cmudrn", max_hw=(128, 128)))
    report = evaluate(restore, find_sets(tmp_path / "dev"), progress=False)
    assert [len(s.images) for s in report.sets] == [2]
