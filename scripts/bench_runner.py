"""Benchmark: raw onnxruntime inference vs the whole runner, per field, on the same frames;
and the runner with its classifiers (WBC differential, and unless --no-all-subtype the ALL
subtype) vs detector only.

Raw inference is the model alone, one frame at a time on all cores (its fastest time per
frame); it is also timed in the runner's own configuration (`backend.fields_in_flight`
frames at once), and the runner is also timed with one field in flight.

The compared measurements alternate in rounds (raw, runner, raw, runner, ...) and each ratio is
the median of the per-round ratios, so that the machine's drift (the same inference here varies
from 20 to 27 ms within minutes) falls on both sides of a ratio alike.

Prints a table and writes JSON. Run it on an idle machine (no training in the background):

    python scripts/bench_runner.py --folder ../shared/datasets/detection/bccd/JPEGImages \
        --frames 150 --json docs/bench/runner.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime

from edge.capture.folder import IMAGE_SUFFIXES, FolderSource, read_image
from edge.config import BUNDLED_WBC_CLASSIFIER, Profile
from edge.core.labels import WBC
from edge.inference.detector import Detector, Prepared, Timed
from edge.inference.yolo import letterbox_tensor
from edge.pipeline.runner import Runner
from edge.pipeline.second_stage import FieldClassifiers
from edge.storage.store import Store

PROFILE_TOML = Path(__file__).parents[1] / "firmware_config/profiles/workstation-dev.toml"


def raw_inference(detector: Detector, tensors: list[np.ndarray], warmup: int = 5
                  ) -> list[float]:
    for t in tensors[:warmup]:
        detector.backend.infer(t)
    times = []
    for t in tensors:
        t0 = time.perf_counter()
        detector.backend.infer(t)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def raw_in_flight(detector: Detector, tensors: list[np.ndarray], in_flight: int) -> float:
    """Wall ms per frame with `in_flight` frames in the model at once (after a warm-up)."""
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(detector.backend.infer, tensors[:5]))
        t0 = time.perf_counter()
        list(pool.map(detector.backend.infer, tensors))
        return (time.perf_counter() - t0) * 1e3 / len(tensors)


def end_to_end(profile: Profile, detector: Detector, classifiers: FieldClassifiers | None,
               folder: Path, data_dir: Path
               ) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Run the runner on the folder; return the time in ms from each field entering the
    detector to the next one doing so, each with that field's number of white cells (in lock
    step: its inference, boxes, checks, [classifiers,] evidence and the next field's
    letterbox; with fields in flight, the pipeline's throughput), and the time between
    consecutive stored fields, each with the later field's number.

    Both are the pipeline's time per field (its stages overlap, and the bounded queues between
    them keep every stage at the pace of the slowest). The first is what the time per field
    is judged by: the writer's completions land on the kernel's scheduler ticks (4 ms here),
    because the writer runs beside the detector's threads and gets a core at a tick, so the
    median of the second snaps to a multiple of 4 ms (docs/benchmarks.md).
    """
    profile.storage.data_dir = data_dir
    store = Store.open(data_dir)
    stamps: list[tuple[float, int]] = []
    starts: list[float] = []
    detect = detector.detect

    def timed_detect(prepared: Prepared) -> Timed:
        starts.append(time.perf_counter())
        return detect(prepared)

    detector.detect = timed_detect  # type: ignore[method-assign]
    try:
        Runner(profile, store, detector, classifiers).run(
            FolderSource(folder), "bench", None,
            lambda _sid, o: stamps.append((time.perf_counter(), (o.counts or {}).get(WBC, 0))))
    finally:
        del detector.detect  # back to the class's method
    if len(starts) != len(stamps):
        raise RuntimeError("every benchmark field must reach the detector: use clean images")
    wbc = [n for _, n in stamps]
    return ([((b - a) * 1e3, n) for (a, b), n in zip(itertools.pairwise(starts), wbc[:-1],
                                                           strict=True)],
            [((b - a) * 1e3, n) for (a, _), (b, n) in itertools.pairwise(stamps)])


def median_ms(fields: list[tuple[float, int]], max_wbc: int | None = None) -> float:
    """Median time per field; with `max_wbc`, of fields with at most that many white cells."""
    return statistics.median(ms for ms, wbc in fields if max_wbc is None or wbc <= max_wbc)


def classifier_latency(images: list[np.ndarray], wbc_model: Path) -> dict[str, float]:
    """Median ms per WBC crop and per ALL field, model call and preprocessing included."""
    from edge.config import BUNDLED_ALL_CLASSIFIER
    from edge.inference.classifier import Classifier

    out = {}
    for name, path, crop in (("wbc_ms_per_crop", wbc_model, True),
                             ("all_ms_per_field", BUNDLED_ALL_CLASSIFIER, False)):
        classifier = Classifier(path)
        times = []
        for image in images:
            part = image[100:300, 200:400] if crop else image
            t0 = time.perf_counter()
            classifier(part)
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = statistics.median(times[5:])
    return out


def runner_peak_rss_mb(folder: Path, data_dir: Path, profile: Path | None = None) -> float:
    """Peak RSS of one `hemascope run` process on the folder."""
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-s", f"folder:{folder}",
                             "--data-dir", str(data_dir), "--sample", "bench-rss",
                             *(["--profile", str(profile)] if profile else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"hemascope run failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="folder of real field images")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    ap.add_argument("--json", type=Path, help="write results here")
    ap.add_argument("--wbc-model", type=Path, default=BUNDLED_WBC_CLASSIFIER,
                    help="the WBC differential to time (default: the bundled one)")
    ap.add_argument("--no-all-subtype", action="store_true",
                    help="time the differential alone, without the ALL subtype field model")
    args = ap.parse_args()

    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = paths[: args.frames]
    profile = Profile()
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        for p in paths:
            os.symlink(p.resolve(), frames / p.name)
        # The RSS children go first: a child forked later would inherit (and report) the
        # memory of the decoded frames this process holds.
        rss = runner_peak_rss_mb(frames, Path(tmp) / "rss-data")
        one_toml = Path(tmp) / "one-field.toml"
        default_toml = PROFILE_TOML.read_text()
        one_toml.write_text(default_toml.replace(
            f"fields_in_flight = {profile.backend.fields_in_flight}", "fields_in_flight = 1"))
        if one_toml.read_text() == default_toml:
            raise RuntimeError(f"no fields_in_flight line in {PROFILE_TOML}")
        rss_one = runner_peak_rss_mb(frames, Path(tmp) / "rss-one", one_toml)
        in_flight = profile.backend.fields_in_flight
        one = profile.model_copy(deep=True)
        one.backend.fields_in_flight = 1
        raw_detector = Detector(profile.model.detector)  # all cores, one frame at a time
        detector = Detector(profile.model.detector, threads=profile.backend.inference_threads())
        enabled = profile.classifiers.model_copy(update={"wbc": True,
                                                         "all_subtype": not args.no_all_subtype,
                                                         "wbc_model": args.wbc_model})
        classifiers = FieldClassifiers(enabled, detector.classes)
        images = [read_image(p) for p in paths]
        tensors = [letterbox_tensor(im, detector.size)[0] for im in images]
        raw, raw_many, e2e, stored, e2e_one, det_only, classified = [], [], [], [], [], [], []
        for r in range(args.rounds):
            raw.append(statistics.median(raw_inference(raw_detector, tensors)))
            raw_many.append(raw_in_flight(detector, tensors, in_flight))
            detector_only, committed = end_to_end(profile, detector, None, frames,
                                                  Path(tmp) / f"d{r}")
            e2e.append(median_ms(detector_only))
            stored.append(median_ms(committed))
            e2e_one.append(median_ms(end_to_end(one, raw_detector, None, frames,
                                                Path(tmp) / f"o{r}")[0]))
            # second stage, on fields with at most 3 white cells (issue 4's condition)
            det_only.append(median_ms(detector_only, max_wbc=3))
            classified.append(median_ms(end_to_end(profile, detector, classifiers, frames,
                                                   Path(tmp) / f"c{r}")[0], max_wbc=3))
        few_wbc = sum(wbc <= 3 for _, wbc in detector_only)  # of the frames - 1 periods
        latency = classifier_latency(images, args.wbc_model)

    result = {
        "frames": len(paths),
        "model": {"file": detector.model_path.name, "sha256": detector.sha256,
                  "input": list(detector.size)},
        "rounds": args.rounds,
        "fields_in_flight": in_flight,
        "detector_threads_per_field": profile.backend.inference_threads(),
        "raw_infer_ms": {"median": statistics.median(raw), "per_round": raw},
        "end_to_end_ms_per_field": {"median": statistics.median(e2e), "per_round": e2e},
        "ratio_end_to_end_over_raw": statistics.median(np.divide(e2e, raw).tolist()),
        "ratio_per_round": np.divide(e2e, raw).round(3).tolist(),
        "between_stored_fields_ms": {"median": statistics.median(stored), "per_round": stored},
        "ratio_between_stored_fields_over_raw":
            statistics.median(np.divide(stored, raw).tolist()),
        "raw_ms_per_frame_in_flight": {"median": statistics.median(raw_many),
                                       "per_round": raw_many},
        "ratio_end_to_end_over_raw_in_flight":
            statistics.median(np.divide(e2e, raw_many).tolist()),
        "one_field_in_flight": {
            "end_to_end_ms_per_field": {"median": statistics.median(e2e_one),
                                        "per_round": e2e_one},
            "ratio_end_to_end_over_raw": statistics.median(np.divide(e2e_one, raw).tolist()),
            "ratio_per_round": np.divide(e2e_one, raw).round(3).tolist(),
            "runner_peak_rss_mb": rss_one,
        },
        "runner_peak_rss_mb": rss,
        "classifiers": {
            "periods_of_fields_with_at_most_3_wbc": few_wbc,
            "detector_only_ms_per_field": statistics.median(det_only),
            "all_subtype": not args.no_all_subtype,
            "with_classifiers_ms_per_field": statistics.median(classified),
            "ratio_with_classifiers_over_detector_only":
                statistics.median(np.divide(classified, det_only).tolist()),
            "ratio_per_round": np.divide(classified, det_only).round(3).tolist(),
            "wbc_model": {"file": str(args.wbc_model),
                          "sha256": classifiers.wbc.sha256 if classifiers.wbc else None},
            **latency,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "processor": platform.machine()},
    }
    print(f"frames {result['frames']}  model {detector.model_path.name} "
          f"{detector.size[0]}x{detector.size[1]}")
    print(f"raw onnxruntime inference   median {result['raw_infer_ms']['median']:7.2f} ms")
    print(f"end-to-end per field        median "
          f"{result['end_to_end_ms_per_field']['median']:7.2f} ms")
    print(f"ratio                       {result['ratio_end_to_end_over_raw']:.3f}x "
          f"(rounds: {result['ratio_per_round']})")
    print(f"between stored fields       median {result['between_stored_fields_ms']['median']:7.2f}"
          f" ms, ratio {result['ratio_between_stored_fields_over_raw']:.3f}x (on 4 ms ticks)")
    print(f"raw, {in_flight} frames in flight     median "
          f"{result['raw_ms_per_frame_in_flight']['median']:7.2f} ms per frame, runner "
          f"{result['ratio_end_to_end_over_raw_in_flight']:.3f}x that")
    o = result["one_field_in_flight"]
    print(f"one field in flight         median {o['end_to_end_ms_per_field']['median']:7.2f} ms, "
          f"ratio {o['ratio_end_to_end_over_raw']:.3f}x (rounds: {o['ratio_per_round']}), "
          f"peak RSS {rss_one:.1f} MB")
    print(f"runner peak RSS             {rss:7.1f} MB ({in_flight} fields in flight)")
    c = result["classifiers"]
    print(f"fields with <= 3 WBC: detector only {c['detector_only_ms_per_field']:.2f} ms, "
          f"with the classifiers {c['with_classifiers_ms_per_field']:.2f} ms, ratio "
          f"{c['ratio_with_classifiers_over_detector_only']:.3f}x (rounds: {c['ratio_per_round']})")
    print(f"classifier latency: WBC {c['wbc_ms_per_crop']:.2f} ms/crop, "
          f"ALL {c['all_ms_per_field']:.2f} ms/field")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
