"""Where the onnx-int8 speed comes from: quantization variants of one fp32 ONNX, each gated
(mAP50 on the full val split) and timed in turns against fp32 in one run, with the op
types onnxruntime actually runs after its graph fusions (QLinear* = int8 kernels).

Run on an idle machine (no training in the background):

    python scripts/int8_study.py edge/models/detector.onnx runs/detector/data \
        --out runs/int8-study --json docs/bench/int8-study.json
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from edge.capture.folder import read_image
from edge.inference.yolo import letterbox_tensor
from export.artifact import derive_manifest
from export.calibration import calibration_images
from export.gate import GateFailed, run_gate
from export.onnx_int8 import CalibrationReader, export_onnx_int8, head_decode_nodes

# variant -> quantize_static keyword changes from the shipped recipe (None: the shipped one)
VARIANTS: dict[str, dict | None] = {
    "shipped (all ops but the head decode, per-channel)": None,
    "per-tensor weights": {"per_channel": False},
    "Conv only (SiLU, Add, Concat... stay float)": {"op_types_to_quantize": ["Conv"]},
}


def session(model: Path, threads: int, dump: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if dump:
        options.optimized_model_filepath = str(dump)
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def kernels(model: Path, out: Path) -> dict[str, int]:
    """Op types of the graph onnxruntime runs after fusing QDQ pairs."""
    dump = out / f"{model.stem}.optimized.onnx"
    session(model, 1, dump)
    return dict(collections.Counter(n.op_type for n in onnx.load(str(dump)).graph.node)
                .most_common())


def variant(reference: Path, out: Path, name: str, changes: dict, cal) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out / "prepared.onnx"
    if not prepared.exists():
        quant_pre_process(str(reference), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    kwargs = {"quant_format": QuantFormat.QDQ, "per_channel": True,
              "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
              "nodes_to_exclude": head_decode_nodes(model),
              "calibrate_method": CalibrationMethod.MinMax,
              "extra_options": {"CalibMaxIntermediateOutputs": 32}, **changes}
    path = out / f"variant{len(list(out.glob('variant*.onnx')))}.onnx"
    quantize_static(prepared, path, CalibrationReader(model.graph.input[0].name, cal.tensors()),
                    **kwargs)
    derive_manifest(reference, path, "int8", "onnxruntime", {"variant": name})
    return path


def latency(models: list[Path], tensors: list[np.ndarray], threads: int,
            blocks: int = 6) -> list[float]:
    """Median ms per model. Models take turns in blocks of frames (ABCABC...), so a machine
    that drifts affects them alike; the first run of each block is untimed, as the previous
    model's onnxruntime threads may still be spinning on the cores."""
    sessions = [session(m, threads) for m in models]
    name = sessions[0].get_inputs()[0].name
    times: list[list[float]] = [[] for _ in models]
    for block in np.array_split(np.arange(len(tensors)), blocks):
        for k, s in enumerate(sessions):
            s.run(None, {name: tensors[block[0]]})
            for i in block:
                t0 = time.perf_counter()
                s.run(None, {name: tensors[i]})
                times[k].append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(x)) for x in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/int8-study"))
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    size = onnx.load(str(args.reference)).graph.input[0].type.tensor_type.shape.dim[2].dim_value
    cal = calibration_images(args.data, (size, size), args.calib_images)
    models: dict[str, Path] = {}
    for name, changes in VARIANTS.items():
        if changes is None:
            models[name] = args.out / "shipped.onnx"
            export_onnx_int8(args.reference, models[name], cal)
        else:
            models[name] = variant(args.reference, args.out, name, changes, cal)
    frames = sorted((args.data / "images" / "val").glob("*.jpg"))[:args.frames]
    tensors = [letterbox_tensor(read_image(p), (size, size))[0] for p in frames]
    paths = [args.reference, *models.values()]
    ms = {threads: latency(paths, tensors, threads) for threads in (0, 1)}
    rows = [{"variant": "fp32 reference", "mAP50": None, "drop": 0.0,
             "ms_all_cores": round(ms[0][0], 2), "ms_1_thread": round(ms[1][0], 2),
             "kernels": kernels(args.reference, args.out)}]
    for k, (name, path) in enumerate(models.items(), start=1):
        try:
            gate = run_gate(path, args.reference, args.data)
        except GateFailed as exc:
            gate = exc.result
        rows.append({"variant": name, "mAP50": round(gate.value, 4), "drop": round(gate.drop, 4),
                     "ms_all_cores": round(ms[0][k], 2), "ms_1_thread": round(ms[1][k], 2),
                     "speedup_all_cores": round(ms[0][0] / ms[0][k], 2),
                     "speedup_1_thread": round(ms[1][0] / ms[1][k], 2),
                     "kernels": kernels(path, args.out)})
        rows[0]["mAP50"] = round(gate.reference_value, 4)
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "kernels"}))
        print("   ", r["kernels"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"reference": str(args.reference), "input": size,
                                         "calib_images": len(cal.paths), "frames": len(frames),
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
