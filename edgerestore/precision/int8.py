"""INT8: activation ranges from calibration frames and explicit Q/DQ graphs in the form each backend runs.

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

Imports onnx, onnxruntime, numpy; never torch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

from edgerestore.contract import VARIANTS, precision_of
from edgerestore.errors import UserError
from edgerestore.exportdir import ExportDir
from edgerestore.graphs import load_onnx, save_onnx
from edgerestore.precision.accuracy import Budgets, GraphRunner, guard
from edgerestore.precision.fp16 import carry_in_float16, fp16_graphs
from edgerestore.precision.frames import Frame, bright_frame, reference_feeds
from edgerestore.precision.variant import PrecisionResult, reference_paths, write_variant
from edgerestore.progress import Progress, as_progress

METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")
FORMS: tuple[str, ...] = tuple(v for v in VARIANTS if precision_of(v) == "int8")  # int8_trt, int8_ort
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ONNX Runtime's CPU kernels gain only when the tensors between convolutions stay 8-bit too (measured on
# the uffn-tiny trunk: conv-only Q/DQ ≈ float32 speed, with these ≈ 1.35× faster).
ORT_QUANTIZED_OPS: tuple[str, ...] = QUANTIZED_OPS + ("Add", "Mul", "Concat", "Relu")


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
    if not feeds:
        raise UserError("INT8 calibration needs at least one calibration frame")
    if pool is None:
        with modelopt_pool() as own:
            return quantize_graph_modelopt(model, feeds, method, own)
    with tempfile.TemporaryDirectory(prefix="edgerestore-mo-") as tmp:
        # ModelOpt may write back into the file it reads (seen with graphs whose value_info names their
        # axes: the export folder's graph then no longer matched model.json), so it reads a copy
        src, out = Path(tmp) / Path(model).name, Path(tmp) / "q.onnx"
        shutil.copyfile(model, src)
        try:
            pool.submit(_modelopt_quantize, str(src), feeds, method, str(out)).result()
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
    progress: Progress | bool = True,
) -> PrecisionResult:
    """export/<profile>/<form>/: Q/DQ graphs from `calib`, each accepted by the guard on `held` or raised
    to the next precision of its ladder (int8_trt → fp16 → fp32, int8_ort → fp32)."""
    import io

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
        for name in as_progress(progress).each(list(meta["graphs"]), f"calibrate {form} ({method})", "graph"):
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
