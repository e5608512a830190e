"""Export one checkpoint to every target this machine can make, through `hemascope export`
with the network blocked (tests/netguard), and collect each gate result; with --twice, export
everything a second time and compare sha256 digests (determinism).

    python scripts/export_targets.py training/checkpoints/detector-416-v1.pt \
        edge/models/detector.onnx runs/detector/data --out runs/exports --json exports.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def targets(checkpoint: Path, reference: Path, data: Path) -> dict[str, list[str]]:
    """target -> `hemascope export` arguments (without --out)."""
    calib = ["--calib", str(data)]
    litert = [str(checkpoint), "--reference", str(reference)]
    return {
        "onnx": [str(checkpoint)],
        "onnx-fp16": [str(reference)],
        "onnx-int8": [str(reference), *calib],
        "litert": litert,
        "litert-int8": [*litert, *calib],
        "edgetpu": [*litert, *calib],
    }


OUT_NAMES = {"onnx": "detector-fp32.onnx", "onnx-fp16": "detector-fp16.onnx",
             "onnx-int8": "detector-int8.onnx", "litert": "detector-litert.tflite",
             "litert-int8": "detector-litert-int8.tflite", "edgetpu": "detector-edgetpu.tflite"}


def export_all(checkpoint: Path, reference: Path, data: Path, out: Path) -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "netguard"),
                                                        str(ROOT)]),
           "HEMASCOPE_NET_LOG": str(out / "net.log")}
    results = {}
    for target, args in targets(checkpoint, reference, data).items():
        path = out / OUT_NAMES[target]
        gated = [] if target == "onnx" else ["--data", str(data)]
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "edge", "export", target, *args, *gated,
                               "--out", str(path)], env=env, capture_output=True, text=True,
                              check=False)
        manifest = json.loads(path.with_suffix(".json").read_text()) if path.exists() else {}
        results[target] = {
            "file": path.name, "exit": done.returncode, "seconds": round(time.time() - started),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None,
            "gate": manifest.get("gate"), "error": done.stderr.strip().splitlines()[-1:]
            if done.returncode else []}
        print(target, results[target]["exit"], (manifest.get("gate") or {}).get("drop"),
              flush=True)
    results["network_attempts"] = (out / "net.log").read_text().splitlines() \
        if (out / "net.log").exists() else []
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("reference", type=Path, help="fp32 ONNX of the checkpoint (gate reference)")
    ap.add_argument("data", type=Path, help="YOLO dataset: calibration on train, gate on val")
    ap.add_argument("--out", type=Path, default=Path("runs/exports"))
    ap.add_argument("--twice", action="store_true", help="export again and compare digests")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = {"first": export_all(args.checkpoint, args.reference, args.data, args.out)}
    if args.twice:
        report["second"] = export_all(args.checkpoint, args.reference, args.data,
                                      args.out / "again")
        report["same_digest"] = {t: report["first"][t]["sha256"] == report["second"][t]["sha256"]
                                 for t in OUT_NAMES}
        print("same digest:", report["same_digest"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
