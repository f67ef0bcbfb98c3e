"""INT8: calibration frames, activation ranges, and explicit Q/DQ graphs in the form each backend runs.

* Frames come from an image folder (optionally with ground truth in `<folder>/gt/` under the same file
  names; a file name starting with a condition, `rain_03.jpg`, labels the frame), a video, or synthetic
  weather on the clean images scikit-image ships (`edgerestore.data.degrade`). The default set, package
  data under `edgerestore/shipped/calibration/` (`edgerestore.assets`), is made by `make_default_set` (see
  its README.md).
* Ranges: ONNX Runtime's calibrators (`minmax`, `percentile`, `entropy`) on the float32 graph's
  activations; branch graphs are fed the float32 trunk's features.
* Q/DQ forms (`onnxruntime.quantization.quantize_static`, QuantFormat.QDQ, per-channel weights):
  - `int8_trt`: int8 activations and weights, both symmetric (every zero point 0), biases left in float —
    TensorRT's parser rejects uint8 activations and int32-quantized biases;
  - `int8_ort`: uint8 activations, int8 weights with 7-bit range (`reduce_range`, which avoids the u8s8
    saturation of AVX2 CPUs without VNNI) — the form ONNX Runtime runs fast on this CPU.
  Only Conv / ConvTranspose / Gemm / MatMul are quantized (plus Add / Mul / Concat / Relu in the ORT
  form, so that tensors stay 8-bit between convolutions): the uint8 → float prologue, the clamp/round
  epilogue and the softmax gates stay as they are.
* `int8_trt` with NVIDIA ModelOpt installed (`nvidia-modelopt`, the `int8-trt` extra): ModelOpt's ONNX
  quantizer instead (`modelopt.onnx.quantization.quantize`, calibrated with ONNX Runtime on the CPU), which
  places Q/DQ where TensorRT fuses them and converts the rest of the graph to float16 (its high
  precision), so the ops between quantized convolutions run in fp16 in TensorRT's strongly typed network
  rather than in float32 as with ONNX Runtime's float32 scales; `features` cross in float16. Its range
  methods are `minmax` (ModelOpt's `max`) and `entropy`; `percentile` stays with ONNX Runtime's quantizer.
* Dynamic H/W: `quant_pre_process` is run without ONNX Runtime's symbolic shape inference, which cannot
  relate the trunk's H/2 features to the branch's H output ("Incomplete symbolic shape inference"); ONNX
  shape inference and the graph optimisation still run, and the quantized graphs keep `height`/`width`.

Imports onnx, onnxruntime, numpy, OpenCV (and scikit-image only to make the default set); never torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgerestore import assets
from edgerestore.conditions import CONDITIONS
from edgerestore.contract import VARIANTS, precision_of
from edgerestore.errors import UserError
from edgerestore.exportdir import ExportDir
from edgerestore.files import write_bytes_atomic
from edgerestore.graphs import load_onnx, save_onnx
from edgerestore.precision import (
    Budgets,
    Frame,
    GraphRunner,
    PrecisionResult,
    bright_frame,
    fp16_graphs,
    guard,
    reference_feeds,
    reference_paths,
    write_variant,
)

METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")
FORMS: tuple[str, ...] = tuple(v for v in VARIANTS if precision_of(v) == "int8")  # int8_trt, int8_ort
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ONNX Runtime's CPU kernels gain only when the tensors between convolutions stay 8-bit too (measured on
# the uffn-tiny trunk: conv-only Q/DQ ≈ float32 speed, with these ≈ 1.35× faster).
ORT_QUANTIZED_OPS: tuple[str, ...] = QUANTIZED_OPS + ("Add", "Mul", "Concat", "Relu")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
DEFAULT_SET = assets.calibration_dir()
SKIMAGE_IMAGES: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")  # public domain / CC0


# ----------------------------------------------------------------------------------------------------------
# frames


def _condition_of(name: str) -> str | None:
    head = Path(name).stem.lower().replace("-", "_").split("_")[0]
    return head if head in CONDITIONS else None


def _fit(image: np.ndarray, long_side: int | None) -> np.ndarray:
    import cv2

    if not long_side or max(image.shape[:2]) <= long_side:
        return image
    scale = long_side / max(image.shape[:2])
    size = (max(2, round(image.shape[1] * scale)), max(2, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def frames_from_folder(folder: Path, limit: int | None = None, long_side: int | None = None) -> list[Frame]:
    from edgerestore.imageio import is_image_file, read_image

    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise UserError(f"no images in {folder}; give a folder of .jpg/.png frames, a video, or 'synthetic'")
    if limit:
        files = files[:limit]
    gt_dir = folder / "gt"
    frames = []
    for path in files:
        target = read_image(gt_dir / path.name) if (gt_dir / path.name).is_file() else None
        image = read_image(path)
        if target is not None and target.shape != image.shape:
            raise UserError(
                f"ground truth {gt_dir / path.name} is {target.shape[:2]}, frame is {image.shape[:2]}"
            )
        frames.append(
            Frame(
                path.name,
                _fit(image, long_side),
                None if target is None else _fit(target, long_side),
                _condition_of(path.name),
            )
        )
    return frames


def frames_from_video(path: Path, limit: int = 24, long_side: int | None = None) -> list[Frame]:
    """Up to `limit` frames spread evenly over the video."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}; is it a video file OpenCV can decode?")
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
        wanted = set(
            np.linspace(0, max(total - 1, 0), num=min(limit, max(total, 1))).round().astype(int).tolist()
        )
        frames, index = [], 0
        while len(frames) < len(wanted):
            ok, image = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(Frame(f"{path.stem}_{index:06d}", _fit(image, long_side)))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise UserError(f"video {path} gave no frames")
    return frames


def clean_images() -> list[tuple[str, np.ndarray]]:
    """Colour photographs that scikit-image ships in its wheel (no download), as uint8 BGR."""
    from skimage import data

    out = []
    for name in SKIMAGE_IMAGES:
        rgb = getattr(data, name)()
        out.append((name, np.ascontiguousarray(rgb[..., :3][..., ::-1])))
    return out


def _degrader():
    try:
        module = importlib.import_module("edgerestore.data.degrade")
    except ImportError:
        module = None
    fn = getattr(module, "degrade_uint8_bgr", None)
    if fn is None:
        raise UserError(
            "synthetic weather needs edgerestore.data.degrade.degrade_uint8_bgr; give a folder or video"
        )
    return fn


def synthetic_frames(count: int = 20, size: tuple[int, int] = (360, 640), seed: int = 0) -> list[Frame]:
    """`count` paired frames: crops of the clean images at `size` (H, W), each degraded by one condition
    in turn (rain, haze, raindrop, snow, and a clean frame every fifth), with the clean crop as ground truth."""
    import cv2

    degrade = _degrader()
    rng = np.random.default_rng(seed)
    sources = clean_images()
    h, w = size
    frames = []
    for i in range(count):
        name, image = sources[
            (i % len(CONDITIONS) + i // len(CONDITIONS)) % len(sources)
        ]  # conditions × images
        scale = max(h / image.shape[0], w / image.shape[1]) * rng.uniform(1.0, 1.6)
        big = cv2.resize(
            image,
            (round(image.shape[1] * scale) + 1, round(image.shape[0] * scale) + 1),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        y = int(rng.integers(0, big.shape[0] - h + 1))
        x = int(rng.integers(0, big.shape[1] - w + 1))
        clean = np.ascontiguousarray(big[y : y + h, x : x + w])
        condition = CONDITIONS[i % len(CONDITIONS)]
        image_out = clean.copy() if condition == "clean" else degrade(clean, condition, seed + i)
        frames.append(
            Frame(f"{condition}_{i:02d}_{name}.jpg", np.asarray(image_out, np.uint8), clean, condition)
        )
    return frames


def make_default_set(
    out_dir: str | Path, count: int = 20, size: tuple[int, int] = (360, 640), seed: int = 0, quality: int = 80
) -> list[Path]:
    """Write the committed default calibration set: <out>/<condition>_<i>_<image>.jpg and <out>/gt/ same names."""
    import cv2

    out_dir = Path(out_dir)
    (out_dir / "gt").mkdir(parents=True, exist_ok=True)
    written = []
    for frame in synthetic_frames(count, size, seed):
        for folder, image in ((out_dir, frame.image), (out_dir / "gt", frame.target)):
            path = folder / frame.name
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"could not encode {path}")
            written.append(write_bytes_atomic(path, data.tobytes()))
    return written


def default_calibration_set(option: str = "--frames") -> Path:
    """The default calibration frames (`DEFAULT_SET`, package data found by `edgerestore.assets`, so an
    installed wheel has them as well as a checkout); `UserError` naming the calling command's own frames
    `option` (`calibrate --frames`, `build --calib`) when they are missing."""
    folder = DEFAULT_SET
    if not folder.is_dir() or not any(folder.glob("*.jpg")):
        raise UserError(
            f"the default calibration set {folder} is missing from this install; give {option} DIR|VIDEO|synthetic"
        )
    return folder


def load_frames(
    source: str | Path | None,
    limit: int | None = None,
    long_side: int | None = None,
    seed: int = 0,
    option: str = "--frames",
) -> list[Frame]:
    """Frames from a folder, a video, `synthetic[:N]`, or (None) the committed default set; `option` is the
    command's option for them, named in errors."""
    if source is None:
        return frames_from_folder(default_calibration_set(option), limit, long_side)
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        count_text = text.split(":", 1)[1] if ":" in text else str(limit or 20)
        if not count_text.isdigit() or int(count_text) < 1:
            raise UserError(
                f"{option} {text!r}: the frame count after 'synthetic:' must be a positive integer"
            )
        count = int(count_text)
        return [
            Frame(f.name, _fit(f.image, long_side), _fit(f.target, long_side), f.condition)
            for f in synthetic_frames(count, seed=seed)
        ]
    path = Path(source)
    if path.is_dir():
        return frames_from_folder(path, limit, long_side)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return frames_from_video(path, limit or 24, long_side)
    raise UserError(
        f"calibration source {path} is not a folder, a video ({', '.join(VIDEO_EXTENSIONS)}) or 'synthetic'"
    )


def split_holdout(frames: list[Frame], holdout: int) -> tuple[list[Frame], list[Frame]]:
    """(calibration frames, held-back frames): `holdout` frames spread evenly, never used for ranges."""
    if holdout <= 0:
        return frames, []
    if holdout >= len(frames):
        raise UserError(f"--holdout {holdout} leaves no calibration frames out of {len(frames)}")
    held_idx = set(np.linspace(len(frames) - 1, 0, num=holdout).round().astype(int).tolist())
    while len(held_idx) < holdout:  # rounding collisions on tiny sets
        held_idx.add(next(i for i in range(len(frames)) if i not in held_idx))
    return (
        [f for i, f in enumerate(frames) if i not in held_idx],
        [f for i, f in enumerate(frames) if i in held_idx],
    )


# ----------------------------------------------------------------------------------------------------------
# Q/DQ graphs


def _reader(feeds: list[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._it, None)

        def get_first(self) -> dict:  # ModelOpt's readers also give the first feed for a dummy run
            return feeds[0]

        def rewind(self) -> None:
            self._it = iter(feeds)

    return FeedReader()


def quantize_graph(
    model: onnx.ModelProto | Path,
    feeds: list[dict],
    form: str,
    method: str = "minmax",
    percentile: float = 99.999,
) -> onnx.ModelProto:
    """An explicit Q/DQ copy of a float32 graph, ranges from `feeds`, in the `int8_trt` or `int8_ort` form."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if form not in FORMS:
        raise UserError(f"unknown INT8 form {form!r}; expected one of {', '.join(FORMS)}")
    if method not in METHODS:
        raise UserError(f"unknown range method {method!r}; expected one of {', '.join(METHODS)}")
    if not feeds:
        raise UserError("INT8 calibration needs at least one calibration frame")
    calibrate_method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    extra: dict = {"CalibPercentile": percentile} if method == "percentile" else {}
    if form == "int8_trt":
        types = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=False)
        extra.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
    else:
        types = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
    if method != "minmax":
        extra["CalibTensorRangeSymmetric"] = form == "int8_trt"
    with tempfile.TemporaryDirectory(prefix="edgerestore-q-") as tmp:
        src, pre, out = Path(tmp) / "src.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        if isinstance(model, onnx.ModelProto):
            save_onnx(model, src)
        else:
            src = Path(model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _reader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS if form == "int8_trt" else ORT_QUANTIZED_OPS),
            calibrate_method=calibrate_method,
            extra_options=extra,
            **types,
        )
        quantized = onnx.load(str(out))
    quantized.producer_name = "edgerestore"
    onnx.checker.check_model(quantized)
    return quantized


#: ModelOpt's calibration method for each range method it has.
MODELOPT_METHODS: dict[str, str] = {"minmax": "max", "entropy": "entropy"}


#: What ModelOpt's ONNX quantizer imports beyond itself (its `[onnx]` extra, which also pins
#: onnxruntime-gpu and an older onnx, so the `int8-trt` extra lists these instead).
MODELOPT_MODULES: tuple[str, ...] = ("modelopt", "onnx_graphsurgeon", "onnxslim", "pynvml", "ml_dtypes")


def trt_quantizer(method: str = "minmax") -> str:
    """Who writes the `int8_trt` graphs: "modelopt" when NVIDIA ModelOpt is installed and has `method`,
    else "onnxruntime". Looks for the modules without importing them (see `quantize_graph_modelopt`)."""
    if method not in MODELOPT_METHODS:
        return "onnxruntime"
    if any(importlib.util.find_spec(m) is None for m in MODELOPT_MODULES):
        return "onnxruntime"
    return "modelopt"


def _modelopt_quantize(src: str, feeds: list[dict], method: str, out: str) -> None:
    """Runs in a child process: importing ModelOpt's quantizer patches ONNX Runtime's calibrators for the
    whole process, which breaks `quantize_static` (the int8_ort form) afterwards."""
    import contextlib
    import io

    from modelopt.onnx.quantization import quantize

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantize(
            src,
            quantize_mode="int8",
            calibration_data_reader=_reader(feeds),
            calibration_method=MODELOPT_METHODS[method],
            calibration_eps=["cpu"],
            high_precision_dtype="fp16",
            output_path=out,
            log_level="ERROR",
        )


def modelopt_pool() -> Any:
    """One child process for ModelOpt (spawned: a fork would share ONNX Runtime's state), reused across
    the graphs of a calibration run; a context manager."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def quantize_graph_modelopt(
    model: Path, feeds: list[dict], method: str = "minmax", pool: Any = None
) -> onnx.ModelProto:
    """TensorRT's INT8 form by NVIDIA ModelOpt: Q/DQ in TensorRT's placement, float16 elsewhere, ranges
    from `feeds` (ONNX Runtime on the CPU, in a child process: `pool`, or one made for this call);
    `features` carried in float16."""
    from edgerestore.precision import carry_in_float16

    if not feeds:
        raise UserError("INT8 calibration needs at least one calibration frame")
    if pool is None:
        with modelopt_pool() as own:
            return quantize_graph_modelopt(model, feeds, method, own)
    with tempfile.TemporaryDirectory(prefix="edgerestore-mo-") as tmp:
        out = Path(tmp) / "q.onnx"
        try:
            pool.submit(_modelopt_quantize, str(model), feeds, method, str(out)).result()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"ModelOpt could not quantize {Path(model).name}: {first}") from None
        quantized = onnx.load(str(out))
    quantized = carry_in_float16(quantized)
    quantized.producer_name = "edgerestore"
    onnx.checker.check_model(quantized)
    return quantized


def make_int8(
    export_dir: str | Path,
    form: str,
    calib: list[Frame],
    held: list[Frame],
    method: str = "minmax",
    budgets: Budgets | None = None,
    progress: bool = True,
) -> PrecisionResult:
    """export/<profile>/<form>/: Q/DQ graphs from `calib`, each accepted by the guard on `held` or raised
    to the next precision of its ladder (int8_trt → fp16 → fp32, int8_ort → fp32)."""
    import contextlib
    import io

    from tqdm import tqdm

    start = time.perf_counter()
    export = ExportDir(export_dir).verify(load=True)
    meta = export.meta
    budgets = budgets or Budgets()
    feeds_for = reference_feeds(export, calib)
    candidates = reference_paths(export)
    quantizer = trt_quantizer(method) if form == "int8_trt" else "onnxruntime"
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(modelopt_pool()) if quantizer == "modelopt" else None
        tmp_dir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=f"edgerestore-{form}-", dir=export.path))
        )
        for name in tqdm(
            list(meta["graphs"]), desc=f"calibrate {form} ({method})", unit="graph", disable=not progress
        ):
            src = export.graph_path(name)
            load_onnx(src)
            if quantizer == "modelopt":
                quantized = quantize_graph_modelopt(src, feeds_for(name), method, pool)
            else:
                with contextlib.redirect_stdout(io.StringIO()):  # ORT's calibrators print their chatter
                    quantized = quantize_graph(src, feeds_for(name), form, method)
            candidates[(name, form)] = save_onnx(quantized, tmp_dir / form / f"{name}.onnx")
        if form == "int8_trt":
            fp16_feeds = reference_feeds(export, calib + held + [bright_frame(calib + held)])
            for name, path in fp16_graphs(export, fp16_feeds, tmp_dir / "fp16", progress).items():
                candidates[(name, "fp16")] = path
        accuracy = guard(meta, GraphRunner(candidates), form, held, budgets, progress)
        settings = {
            "method": method,
            "calibration_frames": len(calib),
            "held_back_frames": len(held),
            "quantizer": _quantizer_note(quantizer),
            "quantized_ops": (
                "ModelOpt's TensorRT placement"
                if quantizer == "modelopt"
                else list(QUANTIZED_OPS if form == "int8_trt" else ORT_QUANTIZED_OPS)
            ),
        }
        return write_variant(
            export, form, candidates, accuracy, budgets, settings, time.perf_counter() - start
        )


def _quantizer_note(quantizer: str) -> str:
    if quantizer == "modelopt":
        from importlib.metadata import version

        return f"modelopt {version('nvidia-modelopt')} (float16 high precision)"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} quantize_static (float32 scales)"
