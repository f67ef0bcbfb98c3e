"""A short soak (the long one is benchmarks/soak.py): mixed sizes, tiled frames and every condition from four
threads at once through one Restorer; no frame fails, every frame is counted, resident memory stays flat."""

from __future__ import annotations

import numpy as np

from edgerestore.runtime.restorer import Restorer
from edgerestore.runtime.soak import SoakResult, soak
from edgerestore.testing import PROTOTYPES, write_bundle


def test_a_short_soak_from_four_threads_keeps_memory_flat(tmp_path):
    bundle = write_bundle(tmp_path / "b", depth=1, max_hw=(256, 256), branch_scales={"haze": 0.5})
    rng = np.random.default_rng(0)
    sources = [
        np.clip(np.array(c) + rng.integers(-20, 21, size=(200, 300, 3)), 0, 255).astype(np.uint8)
        for c in PROTOTYPES.values()
    ]
    with Restorer.open(bundle, threads=1) as r:  # stills: every frame routed on its own
        result = soak(r, sources, frames=1500, threads=4, large=(300, 700), large_every=50, samples=60)
        assert r.stats.frames == 1500
    assert result.errors == [] and result.frames == 1500 and result.tiled >= 30
    assert set(result.conditions) == set(PROTOTYPES)
    assert result.growth_mib() < 25, result.rss_mib


def test_growth_reads_the_samples_after_warm_up():
    flat = SoakResult(100, 4, 1.0, [], [(i, 500.0 + (50 if i < 10 else 0)) for i in range(50)])
    leaking = SoakResult(100, 4, 1.0, [], [(i, 500.0 + 2 * i) for i in range(50)])
    assert flat.growth_mib() == 0 and leaking.growth_mib() > 50
