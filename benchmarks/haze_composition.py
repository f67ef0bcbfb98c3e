"""python benchmarks/haze_composition.py [BUNDLE]

One run, interleaved: a forced 640x360 haze frame through the runtime with the additive composition (before
this stop), the guided one with fresh work images each frame, and the guided one with kept work images."""

import sys
import time

import cv2
import numpy as np

from edgerestore.contract import GUIDED_EPS, guided_coefficients
from edgerestore.measure.cases import weather_frames
from edgerestore.runtime.restorer import Restorer

r = Restorer.open(
    sys.argv[1] if len(sys.argv) > 1 else "engines/uffn-tiny-onnxruntime-fp32", threads=2, force="haze"
)
frame = weather_frames((360, 640), ("haze",))[0][1]
kept = r._guided.apply  # runtime.guided.GuidedUpsampler: the shipped composition


def additive(bgr, small, rs, tile_pixels):
    up = cv2.resize(
        rs.astype(np.float32) - small.astype(np.float32),
        (bgr.shape[1], bgr.shape[0]),
        interpolation=cv2.INTER_LINEAR,
    )
    return cv2.add(bgr, up, dtype=cv2.CV_8U)


def fresh(bgr, small, rs, tile_pixels):
    gain, offset = guided_coefficients(small, rs, GUIDED_EPS * 255.0**2)
    a = cv2.resize(gain, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(offset, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.add(cv2.multiply(bgr, a, dtype=cv2.CV_32F), b, dtype=cv2.CV_8U)


kinds = [
    ("additive (before)", additive),
    ("guided, fresh work images", fresh),
    ("guided, kept (shipped)", kept),
]
for _ in range(10):
    r(frame)
t = {k: [] for k, _ in kinds}
for i in range(400):
    for k, f in kinds[i % 3 :] + kinds[: i % 3]:
        r._guided.apply = f
        t0 = time.perf_counter()
        out = r(frame)
        t[k].append((time.perf_counter() - t0) * 1e3)
for k, v in t.items():
    print(
        f"{k:28s} p50 {np.percentile(v, 50):.2f}  p90 {np.percentile(v, 90):.2f}  p99 {np.percentile(v, 99):.2f} ms"
    )
r.close()
