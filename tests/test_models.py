"""The papers' models: shapes, exact part composition, init identities, cross-stitch algebra, zoo table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgerestore.conditions import CONDITIONS  # noqa: E402
from edgerestore.contract import GUIDED_EPS  # noqa: E402
from edgerestore.models import zoo  # noqa: E402
from edgerestore.models.blocks import CrossStitch, ShareSepConv, SmoothDilatedResBlock  # noqa: E402
from edgerestore.models.cmudrn import CMUDRN, CMUDRNConfig  # noqa: E402
from edgerestore.models.uffn import UFFN, UFFNConfig, guided_coefficients, pad_to_multiple  # noqa: E402

TINY = UFFNConfig(
    width=8,
    experts=2,
    expert_blocks=1,
    branch_blocks=1,
    expert_dilations=(1, 2),
    router_width=8,
    thumbnail_size=32,
)


def tiny_uffn(seed: int = 0) -> UFFN:
    torch.manual_seed(seed)
    return UFFN(TINY).eval()


@pytest.mark.parametrize("size", [(97, 131), (2, 2), (64, 64), (360, 640), (33, 48)])
def test_uffn_output_keeps_any_input_size(size):
    model = tiny_uffn()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        restored, logits = model(x, torch.tensor([1, 3]))
    assert restored.shape == x.shape
    assert logits.shape == (2, len(CONDITIONS))


def test_uffn_parts_compose_exactly_to_forward():
    model = tiny_uffn()
    x = torch.rand(1, 3, 97, 131)
    padded, (h, w) = pad_to_multiple(x, model.stride)
    with torch.inference_mode():
        for index, name in enumerate(CONDITIONS[1:], start=1):
            full, logits = model(x, torch.tensor([index]))
            composed = model.branch(name)(padded, model.trunk(padded))[..., :h, :w]
            assert torch.equal(full, composed), name
            assert torch.equal(logits, model.router(model.make_thumbnail(x)))


def test_reduced_resolution_branch_composes_as_documented():
    """A branch with scale s runs on the area-downscaled frame; the local affine map its clamped output applied
    there (the guided filter) is upsampled and applied to the frame; the
    other branches keep the full-resolution composition, also in a mixed teacher-forced batch."""
    import dataclasses

    import torch.nn.functional as F

    torch.manual_seed(0)
    model = UFFN(dataclasses.replace(TINY, branch_scales={"haze": 0.5})).eval()
    x = torch.rand(2, 3, 97, 131)
    with torch.inference_mode():
        mixed, _ = model(x, torch.tensor([2, 1]))
        small = F.interpolate(x[:1], size=(48, 66), mode="area")  # round(48.5) = 48, round(65.5) = 66
        padded, _ = pad_to_multiple(small, model.stride)
        low = model.branch("haze")(padded, model.trunk(padded))[..., :48, :66].clamp(0, 1)
        gain, offset = guided_coefficients(small, low, GUIDED_EPS)
        up = lambda t: F.interpolate(t, size=(97, 131), mode="bilinear", align_corners=False)  # noqa: E731
        assert torch.equal(mixed[:1], up(gain) * x[:1] + up(offset))
        assert torch.equal(mixed[:1], model.restore(x[:1], "haze"))
        padded, _ = pad_to_multiple(x[1:], model.stride)
        assert torch.equal(mixed[1:], model.branch("rain")(padded, model.trunk(padded))[..., :97, :131])
    assert model.branch_scale("haze") == 0.5 and model.branch_scale("rain") == 1.0
    for bad in ({"fog": 0.5}, {"clean": 0.5}, {"haze": 0.0}, {"haze": 1.5}):
        with pytest.raises(ValueError, match="branch_scales"):
            UFFN(dataclasses.replace(TINY, branch_scales=bad))


def test_subpixel_decoder_starts_as_the_identity_and_bad_decoders_are_refused():
    import dataclasses

    torch.manual_seed(0)
    model = UFFN(dataclasses.replace(TINY, branch_decoders={"snow": "subpixel"})).eval()
    assert model.branch_decoder("snow") == "subpixel" and model.branch_decoder("rain") == "transposed"
    x = torch.rand(1, 3, 30, 46)
    with torch.inference_mode():
        assert torch.equal(model.restore(x, "snow"), x)  # a new sub-pixel decoder corrects nothing yet
        assert model.restore(x, "rain").shape == x.shape
    for bad in ({"fog": "subpixel"}, {"clean": "subpixel"}, {"rain": "bilinear"}):
        with pytest.raises(ValueError, match="branch_decoders"):
            UFFN(dataclasses.replace(TINY, branch_decoders=bad))


def test_uffn_routes_by_argmax_and_passes_clean_through():
    model = tiny_uffn()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        model.router_net.fc.bias.copy_(torch.tensor([100.0, 0, 0, 0, 0]))  # router says clean
        restored, logits = model(x)
    assert logits.argmax(1).item() == 0
    assert torch.equal(restored, x)
    with torch.no_grad():
        model.router_net.fc.bias.copy_(torch.tensor([0, 0, 100.0, 0, 0]))  # router says haze
        routed, _ = model(x)
        forced, _ = model(x, torch.tensor([2]))
    assert torch.equal(routed, forced)
    assert not torch.equal(routed, x)


def test_trunk_features_have_documented_shape():
    model = tiny_uffn()
    with torch.inference_mode():
        f = model.trunk(torch.rand(1, 3, 96, 130))
    assert f.shape == (1, model.feature_channels, 48, 65)


def test_sharesepconv_is_identity_at_init():
    conv = ShareSepConv(7)
    x = torch.rand(2, 5, 23, 17)
    assert torch.allclose(conv(x), x)
    with pytest.raises(ValueError):
        ShareSepConv(4)


def test_smooth_dilated_block_keeps_shape_and_is_residual():
    block = SmoothDilatedResBlock(6, dilation=4, norm="instance")
    for p in list(block.conv2.parameters()):
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 6, 31, 29)
    # with the second conv zeroed the block is ReLU(x + norm(0)) = ReLU(x + bias) = x for x >= 0, bias 0
    torch.nn.init.zeros_(block.norm2.bias)
    assert torch.allclose(block(x), x)


def test_cross_stitch_algebra():
    a, b = torch.rand(1, 4, 5, 5), torch.rand(1, 4, 5, 5)
    stitch = CrossStitch()
    a2, b2 = stitch(a, b)
    assert torch.allclose(a2, (a + b) / 2) and torch.allclose(b2, (a + b) / 2)
    with torch.no_grad():
        stitch.alpha.copy_(torch.tensor([1.0, 0.25]))
    a2, b2 = stitch(a, b)
    assert torch.equal(a2, a)
    assert torch.allclose(b2, 0.25 * b + 0.75 * a)
    with torch.no_grad():
        stitch.alpha.copy_(torch.tensor([1.7, -0.3]))  # clamped to a convex combination
    a2, b2 = stitch(a, b)
    assert torch.equal(a2, a) and torch.allclose(b2, a)


@pytest.mark.parametrize("loops", [1, 3])
def test_cmudrn_returns_every_stage(loops):
    torch.manual_seed(0)
    model = CMUDRN(CMUDRNConfig(loops=loops, width=8)).eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.inference_mode():
        out = model(x)
    assert out.restored.shape == x.shape
    assert len(out.rain_stages) == loops and len(out.snow_stages) == loops
    assert torch.equal(out.rain_stages[-1], out.rain)


def test_cmudrn_loop_count_shares_weights():
    torch.manual_seed(0)
    m3 = CMUDRN(CMUDRNConfig(loops=3, width=8))
    m7 = m3.with_loops(7)
    assert m7.loops == 7
    assert zoo.count_parameters(m3) == zoo.count_parameters(m7)
    for (n1, p1), (n2, p2) in zip(m3.state_dict().items(), m7.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    with pytest.raises(ValueError):
        CMUDRN(CMUDRNConfig(loops=8))


def test_seeded_construction_is_deterministic():
    x = torch.rand(1, 3, 48, 48)
    with torch.inference_mode():
        a, _ = tiny_uffn(7)(x, torch.tensor([4]))
        b, _ = tiny_uffn(7)(x, torch.tensor([4]))
        c, _ = tiny_uffn(8)(x, torch.tensor([4]))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_training_graph_backpropagates_through_teacher_forced_branches():
    model = tiny_uffn().train()
    x = torch.rand(4, 3, 32, 32)
    restored, logits = model(x, torch.tensor([0, 1, 2, 4]))
    (restored.mean() + logits.mean()).backward()
    assert model.branches["rain"].decoder[-1].weight.grad is not None
    assert model.branches["raindrop"].decoder[-1].weight.grad is None  # not selected: never ran


def test_checkpoint_round_trip(tmp_path):
    model = zoo.build("uffn-tiny")
    path = zoo.save_checkpoint(tmp_path / "m.pt", model, "uffn-tiny", step=3)
    loaded, meta = zoo.load_checkpoint(path)
    assert meta["step"] == 3 and len(meta["sha256"]) == 64
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    from edgerestore.errors import UserError

    with pytest.raises(UserError, match="not found"):
        zoo.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        zoo.load_checkpoint(tmp_path / "junk.pt")


def test_readme_zoo_table_matches_the_code():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for row in zoo.zoo_table():
        line = next((ln for ln in readme.splitlines() if ln.startswith(f"| `{row['profile']}`")), None)
        assert line is not None, f"README has no zoo row for {row['profile']}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == f"{row['params']:,}", row["profile"]
        assert cells[3] == f"{row['params_routed']:,}", row["profile"]
        assert re.fullmatch(r"[\d.]+", cells[4]) and abs(float(cells[4]) - row["gmacs_256"]) < 0.01
        assert abs(float(cells[5]) - row["gmacs_640x360"]) < 0.01


def test_guided_upsampling_carries_a_branch_gain_to_full_resolution_and_matches_the_runtime():
    """The reduced branches' composition (`contract.guided_coefficients`, torch twin in models/uffn.py): an
    affine branch (out = 0.5·in + 0.3, a contrast change like haze removal's 1/t) is carried exactly, so
    full-resolution detail gets the gain — an added, upsampled correction would leave it at gain 1; a flat
    frame gets the plain additive correction (ε pulls towards gain 1); numpy and torch agree."""
    import torch.nn.functional as F

    from edgerestore.contract import guided_coefficients as guided_numpy

    rng = np.random.default_rng(0)
    small = rng.random((40, 56, 3)).astype(np.float32)
    a, b = guided_numpy(small, 0.5 * small + 0.3, GUIDED_EPS)
    assert np.allclose(a, 0.5, atol=1e-3) and np.allclose(b, 0.3, atol=1e-3)
    flat = np.full((40, 56, 3), 0.4, np.float32)
    a, b = guided_numpy(flat, flat + 0.1, GUIDED_EPS)
    assert np.allclose(a, 1.0, atol=1e-4) and np.allclose(b, 0.1, atol=1e-4)
    out = rng.random((40, 56, 3)).astype(np.float32)
    a_np, b_np = guided_numpy(small, out, GUIDED_EPS)
    to_t = lambda x: torch.from_numpy(x.transpose(2, 0, 1)[None].copy())  # noqa: E731
    a_t, b_t = guided_coefficients(to_t(small), to_t(out), GUIDED_EPS)
    assert torch.allclose(a_t, to_t(a_np), atol=1e-3) and torch.allclose(b_t, to_t(b_np), atol=1e-3)
    # at full resolution: fine detail invisible at the reduced size gets the branch's gain
    big = torch.rand(1, 3, 160, 224)
    low = F.interpolate(big, size=(40, 56), mode="area")
    gain, offset = guided_coefficients(low, 0.5 * low + 0.3, GUIDED_EPS)
    up = lambda t: F.interpolate(t, size=(160, 224), mode="bilinear", align_corners=False)  # noqa: E731
    want = 0.5 * big + 0.3
    guided_error = (up(gain) * big + up(offset) - want).abs().max()
    additive_error = (big + up(0.3 - 0.5 * low) - want).abs().max()
    assert guided_error < 0.02 < 0.2 < additive_error  # ε's pull towards gain 1 is the 0.01 left
