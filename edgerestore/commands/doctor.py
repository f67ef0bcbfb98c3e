"""`edgerestore doctor`: what is installed on this device, which bundles here can run on it and why not,
and what to install for the missing parts — one screen. Exit 0 when the default path works (ONNX Runtime,
OpenCV and the default uffn-tiny bundle, or the shipped graphs to build it from); 1 otherwise.

Imports no torch (it only looks for it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines-root",
        type=Path,
        default=None,
        help="where to look for bundles (default: where build writes them, $EDGERESTORE_ENGINES or the checkout's engines/)",
    )
    parser.add_argument("--no-display-check", action="store_true", help="skip opening a test window")


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception as exc:  # installed but broken (a missing shared library)
        return f"broken ({str(exc).splitlines()[0][:80]})"


def _jetson() -> str | None:
    try:
        return Path("/etc/nv_tegra_release").read_text().splitlines()[0].strip("# ").split(", REVISION")[0]
    except (OSError, IndexError):
        return None


def run(args: argparse.Namespace) -> int:
    from edgerestore import __version__, assets

    todo: list[str] = []
    print(
        f"edgerestore {__version__} · Python {platform.python_version()} on {platform.machine()} ({platform.system()})"
    )
    if (jetson := _jetson()) is not None:
        print(f"  Jetson: {jetson}")

    print("packages")
    ort = _version("onnxruntime")
    providers: list[str] = []
    if ort and not ort.startswith("broken"):
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
        print(f"  onnxruntime   {ort}  providers: {', '.join(providers)}")
    else:
        print(f"  onnxruntime   {ort or 'not installed'}")
        todo.append(
            "pip install onnxruntime (onnxruntime-gpu on a CUDA machine; Jetson: NVIDIA's Jetson wheel)"
        )
    cv = _version("cv2")
    print(f"  opencv        {cv or 'not installed'}")
    if cv is None:
        todo.append("pip install opencv-python (Jetson: JetPack's python3-opencv, which has GStreamer)")
    trt, rtx = _version("tensorrt"), _version("tensorrt_rtx")
    print(f"  tensorrt      {trt or 'not installed'}")
    print(f"  tensorrt_rtx  {rtx or 'not installed'}")
    torch = importlib.util.find_spec("torch") is not None
    print(
        f"  torch         {'installed' if torch else 'not installed'} (only to train or export a new checkpoint)"
    )

    print("device")
    from edgerestore.runtime.nvidia import cuda_device_info, driver_version

    driver = driver_version()
    gpu = cuda_device_info()
    print(f"  CUDA driver   {driver or 'none (no NVIDIA driver)'}")
    if gpu is not None:
        print(f"  GPU           {gpu.name}, compute capability {gpu.compute_capability}")
    elif driver is not None and importlib.util.find_spec("cuda") is None:
        print("  GPU           unknown: cuda-python is not installed")
        todo.append("pip install 'edgerestore[gpu]' (cuda-python, for TensorRT bundles)")
    else:
        print("  GPU           none")
    if driver is not None and trt is None and rtx is None:
        todo.append(
            "TensorRT: JetPack ships it (python3-libnvinfer); elsewhere pip install 'edgerestore[tensorrt]'"
        )
    if driver is not None and providers and "CUDAExecutionProvider" not in providers:
        print("  note          this onnxruntime runs on the CPU only (onnxruntime-gpu adds CUDA)")

    if cv is not None:
        import cv2

        from edgerestore.runtime.sources import gstreamer_status

        reg = cv2.videoio_registry
        names = sorted({reg.getBackendName(b) for b in reg.getBackends() if reg.hasBackend(b)})
        gst, why = gstreamer_status()
        print(f"  video I/O     {', '.join(names)}")
        if not gst:
            print(f"  GStreamer     no: csi:// and gst:// inputs need it; {why}")
        if args.no_display_check:
            print("  display       not checked")
        else:
            from edgerestore.runtime.video import display_available

            ok, reason = display_available(timeout=8.0)
            print(f"  display       {'yes' if ok else 'no: ' + reason + ' (camera runs headless)'}")

    print("models")
    shipped = assets.shipped_profiles()
    damaged = [f for p in shipped for f in assets.damaged_files(p)]
    print(
        f"  shipped graphs {', '.join(shipped) or 'none'}"
        + (f"; DAMAGED: {', '.join(damaged)}" if damaged else "")
    )
    if damaged:
        todo.append("reinstall edgerestore: its shipped graphs changed after installation")

    from edgerestore.commands._bundle import default_bundle_path
    from edgerestore.engines.bundle import MANIFEST_NAME, load_bundle
    from edgerestore.errors import UserError

    if args.engines_root is None:
        from edgerestore.engines.bundle import engines_root

        args.engines_root = engines_root()
    bundles = sorted(p.parent for p in Path(args.engines_root).glob(f"*/{MANIFEST_NAME}"))
    default_ok = False
    print(f"bundles in {args.engines_root}/" + ("" if bundles else ": none"))
    for path in bundles:
        try:
            bundle = load_bundle(path)
        except UserError as exc:
            print(f"  ✗ {path.name}: {str(exc).removeprefix(str(path) + ': ')}")
            continue
        if bundle.manifest.backend == "tensorrt" and gpu is None:
            print(f"  ✗ {path.name}: TensorRT engines need a CUDA GPU and cuda-python; none usable here")
            continue
        print(f"  ✓ {path.name}")
        default_ok |= path.resolve() == default_bundle_path().resolve()

    usable_ort = bool(providers) and cv is not None
    if default_ok and usable_ort:
        verdict = "the default uffn-tiny bundle runs here: edgerestore camera --device 0"
    elif usable_ort and "uffn-tiny" in shipped and not damaged:
        verdict = "edgerestore camera --device 0 builds the default bundle from the shipped graphs, then runs"
    else:
        verdict = "the default path does not work here; install what is listed below"
    print(f"default path: {verdict}")
    for line in todo:
        print(f"  to install: {line}")
    ok = usable_ort and (default_ok or ("uffn-tiny" in shipped and not damaged))
    sys.stdout.flush()
    return 0 if ok else 1
