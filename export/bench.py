"""`hemascope bench`: every model on the same frames, through the runtime that runs it.

Models take turns in blocks of frames (ABCABC...), so a machine that slows down or speeds up
during the run affects every model alike and the ratios hold; each block starts with untimed
runs, as the previous model's runtime threads may still be spinning on the cores.
Peak RSS is measured in a fresh process per model (load + 20 inferences).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.capture.folder import IMAGE_SUFFIXES, read_image
from edge.inference.detector import Detector
from edge.inference.manifest import load_verified

RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "litert": ("ai_edge_litert", "tflite_runtime"),
                   "tensorrt": ("tensorrt",)}


@dataclass
class BenchRow:
    model: str
    sha256: str
    runtime: str
    precision: str
    size_mb: float
    infer_p50_ms: float
    infer_p90_ms: float
    fields_per_s: float  # letterbox + infer + decode/NMS of decoded frames (no JPEG, no store)
    speedup: float  # fp32 reference p50 / this p50 (same run)
    peak_rss_mb: float
    map50: float | None


def installed(runtime: str) -> bool:
    return any(importlib.util.find_spec(m) for m in RUNTIME_MODULES[runtime])


def peak_rss_mb(model: Path, threads: int) -> float:
    """Peak RSS (VmHWM) of a fresh process that loads `model` and runs it 20 times.

    VmHWM, not getrusage: a child's ru_maxrss starts at its parent's RSS at fork time.
    """
    code = ("import sys, numpy as np; from pathlib import Path; "
            "from edge.inference.detector import Detector; "
            f"d = Detector(Path(sys.argv[1]), sys.argv[2], {threads}, allow_failed_gate=True); "
            "x = np.random.default_rng(0).random(d.backend.input_shape, dtype=np.float32); "
            "[d.backend.infer(x) for _ in range(20)]; "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    runtime = load_verified(model).runtime
    out = subprocess.run([sys.executable, "-c", code, str(model), runtime], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-2]) / 1024  # "VmHWM:   123456 kB"


def bench(models: list[Path], data: Path, split: str = "val", frames: int = 50,
          threads: int = 0, with_map: bool = True, warmup: int = 2,
          blocks: int = 5) -> list[BenchRow]:
    """Benchmark `models` (the first is the reference for speed-up) on the first `frames`
    images of DATA/images/SPLIT; mAP50 on the whole split when `with_map`."""
    from training.evaluate import predict_split
    from training.metrics import detection_metrics

    paths = sorted(p for p in (data / "images" / split).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)[:frames]
    images = [read_image(p) for p in paths]
    detectors = [Detector(m, load_verified(m).runtime, threads, allow_failed_gate=True)
                 for m in models]
    prepared = [[d.prepare(im) for im in images] for d in detectors]
    infer: list[list[float]] = [[] for _ in models]
    e2e = [0.0 for _ in models]
    for block in np.array_split(np.arange(len(images)), min(blocks, len(images))):
        for k, d in enumerate(detectors):
            for _ in range(warmup):  # untimed: the previous model's threads may still spin
                d.backend.infer(prepared[k][block[0]].tensor)
            for i in block:
                t0 = time.perf_counter()
                d.backend.infer(prepared[k][i].tensor)
                t1 = time.perf_counter()
                d(images[i])  # letterbox + infer + decode and NMS, as the runner calls it
                e2e[k] += time.perf_counter() - t1
                infer[k].append((t1 - t0) * 1e3)
    ref_p50 = float(np.median(infer[0]))
    rows = []
    for k, (model, d) in enumerate(zip(models, detectors, strict=True)):
        m = d.manifest
        map50 = None
        if with_map:
            preds, truths, classes, _ = predict_split(model, data, split, backend=m.runtime)
            map50 = detection_metrics(preds, truths, classes).map50
        p50, p90 = np.median(infer[k]), np.percentile(infer[k], 90)
        rows.append(BenchRow(model.name, m.sha256, m.runtime, m.precision,
                             round(model.stat().st_size / 2**20, 2), round(float(p50), 2),
                             round(float(p90), 2), round(len(images) / e2e[k], 1),
                             round(ref_p50 / float(p50), 2), round(peak_rss_mb(model, threads), 1),
                             None if map50 is None else round(map50, 4)))
    return rows


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    import os
    import platform

    import onnxruntime

    return {"machine": platform.machine(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def write_json(rows: list[BenchRow], path: Path, meta: dict[str, object]) -> None:
    path.write_text(json.dumps({**meta, "machine": machine(),
                                "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
