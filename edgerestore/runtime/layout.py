"""What a bundle tells the `Restorer` to run, read and checked once when it opens: the family and its
graphs (UFFN's router, trunk and branches; CMUDRN's one `cmudrn_t<T>`), the stride and the router's thumbnail
size (checked against the graphs themselves), reduced-resolution branches, the router's calibration, the
shape profile and the trunk's feature channels. A bundle that disagrees with this runtime or with its own
graphs is a one-line `BundleError` here, not an error deep inside the backend on some frame.

Must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgerestore.conditions import CONDITIONS
from edgerestore.contract import FEATURES, THUMBNAIL
from edgerestore.errors import BundleError, UserError
from edgerestore.runtime.backend import Backend


@dataclass
class BundleLayout:
    family: str
    conditions: tuple[str, ...]
    model_graph: str | None  # CMUDRN's one graph; None for UFFN (router, trunk, branches)
    stride: int
    thumbnail_size: int
    branch_scales: dict[str, float]
    temperature: float  # the router's calibration (1.0 uncalibrated)
    threshold: float  # its do-no-harm confidence threshold (0.0 uncalibrated)
    min_hw: tuple[int, int]
    max_hw: tuple[int, int] | None
    features: int | None  # the trunk's feature channels, None where neither graph nor manifest says


def read_layout(bundle: Any, backend: Backend, loops: int | None = None) -> BundleLayout:
    """`bundle`'s layout with its graphs loaded in `backend`; `loops` picks a CMUDRN bundle's graph."""
    m = bundle.manifest
    family, conditions = str(m.family), tuple(m.conditions)
    # UFFN's router outputs are indexed by CONDITIONS; CMUDRN (blind) lists the conditions it removes
    if (conditions != CONDITIONS) if family == "uffn" else not set(conditions) <= set(CONDITIONS):
        raise BundleError(
            f"bundle conditions {list(conditions)} differ from this runtime's {list(CONDITIONS)}; "
            "rebuild the bundle with this edgerestore version"
        )
    names = set(bundle.graph_names)
    model_graph: str | None = None
    if family == "cmudrn":
        models = sorted(n for n in names if n.startswith("cmudrn_t"))
        if loops is not None:
            models = [n for n in models if n == f"cmudrn_t{loops}"]
        if len(models) != 1:
            raise UserError(
                f"bundle has CMUDRN graphs {models or sorted(names)}; choose one with loops=<T>"
                if len(models) > 1
                else f"bundle has no CMUDRN graph for loops={loops}; it holds {sorted(names)}"
            )
        model_graph = models[0]
    else:
        need = {"router", "trunk"} | {f"branch_{c}" for c in CONDITIONS[1:]}
        if not need <= names:
            raise BundleError(f"bundle at {bundle.path} lacks graphs {sorted(need - names)}; rebuild it")
    calibration = dict(getattr(m, "router_calibration", None) or {})
    prof = m.shape_profile or {}
    lay = BundleLayout(
        family=family,
        conditions=conditions,
        model_graph=model_graph,
        stride=int(m.stride or 1),
        thumbnail_size=int(m.thumbnail_size or 0),
        branch_scales=dict(m.branch_scales),
        temperature=float(calibration.get("temperature", 1.0)),
        threshold=float(calibration.get("threshold", 0.0)),
        min_hw=tuple(int(v) for v in prof.get("min", (1, 1))),  # type: ignore[arg-type]
        max_hw=tuple(int(v) for v in prof["max"]) if prof.get("max") else None,  # type: ignore[arg-type]
        features=None,
    )
    if model_graph is None:
        lay.features = _feature_channels(bundle, backend)
        _check_manifest_against_graphs(bundle, backend, lay)
    return lay


def _check_manifest_against_graphs(bundle: Any, backend: Backend, lay: BundleLayout) -> None:
    """A UFFN manifest's `thumbnail_size` and `stride` must be what the graphs take."""
    rebuild = getattr(bundle, "rebuild_command", "edgerestore build --force")

    def fail(what: str) -> BundleError:
        return BundleError(f"{bundle.path}: {what}; was the manifest edited? rebuild with: {rebuild}")

    for t in backend.graphs["router"].inputs:
        dims = tuple(t.shape)
        if t.name == THUMBNAIL and len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[1:3]):
            if dims[1:3] != (lay.thumbnail_size, lay.thumbnail_size):
                raise fail(
                    f"manifest thumbnail_size {lay.thumbnail_size} but the router graph takes "
                    f"{dims[1]}x{dims[2]} thumbnails"
                )
    # the trunk's features are frame/2: the padding stride must keep both sides even
    if lay.stride < 1 or lay.stride % 2:
        raise fail(f"manifest stride {lay.stride}, but the trunk halves the frame (stride must be even)")


def _feature_channels(bundle: Any, backend: Backend) -> int | None:
    for t in backend.graphs["trunk"].outputs:
        if t.name == FEATURES and isinstance(t.shape[1], int) and t.shape[1] > 0:
            return int(t.shape[1])
    spec = (bundle.manifest.graphs.get("trunk") or {}).get("outputs") or []
    for t in spec:
        if t.get("name") == FEATURES and isinstance(t["shape"][1], int):
            return int(t["shape"][1])
    return None
