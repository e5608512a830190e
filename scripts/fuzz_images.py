"""Fuzz the folder source's image reading (issue #20, bounded input); writes JSON.

Seeded plain-random cases made from real fields: each of PNG, JPEG, BMP, TIFF and WebP with
its header's width and height rewritten, truncated (JPEGs also with an end marker
appended), bytes flipped near the start, random bytes, and tiny PNGs of any size. Every case
is read as the folder source reads it (`read_image`) and, when it decodes, scored by quality
control (which once took gigabytes on thin images). Reported: outcomes, tracebacks (any
exception but the refusals `ValueError`, `OSError`, `cv2.error`), the slowest case, the
process's peak RSS, and the peak RSS of real `hemascope run`s: one on a folder of the first
cases, one on a folder of camera-size files up to 50 MB (20-25 megapixel PNGs and JPEGs made
from a real field with sensor-like noise, and a flat 25-megapixel PNG of a few KB); the
largest of the two is `max_runner_peak_rss_mb` (acceptance: at most 300 MB).

  python scripts/fuzz_images.py ../shared/datasets/detection/bccd/JPEGImages \
      --cases 10000 --seed 0 --json docs/bench/fuzz-images.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import cv2
import numpy as np

from edge.capture.folder import read_image
from edge.config import QCConfig
from edge.pipeline.qc import assess_image

ROOT = Path(__file__).resolve().parents[1]
FORMATS = (".png", ".jpg", ".bmp", ".tif", ".webp")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _resize_header(data: bytes, suffix: str, width: int, height: int) -> bytes:
    """The file with the width and height its header claims replaced (pixels unchanged)."""
    b = bytearray(data)
    if suffix == ".png":
        ihdr = struct.pack(">II", width, height) + bytes(b[24:29])
        b[8:33] = _png_chunk(b"IHDR", ihdr)
    elif suffix == ".jpg":
        pos = 2
        while pos + 9 < len(b) and b[pos + 1] not in (0xC0, 0xC2):
            pos += 2 + struct.unpack(">H", b[pos + 2:pos + 4])[0]
        b[pos + 5:pos + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    elif suffix == ".bmp":
        b[18:26] = struct.pack("<ii", width % 2**31, height % 2**31)
    elif suffix == ".webp" and b[12:16] == b"VP8 ":
        b[26:30] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    elif suffix == ".tif":
        order = "<" if b[:2] == b"II" else ">"
        (ifd,) = struct.unpack(order + "I", b[4:8])
        (count,) = struct.unpack(order + "H", b[ifd:ifd + 2])
        for i in range(count):
            at = ifd + 2 + 12 * i
            (tag,) = struct.unpack(order + "H", b[at:at + 2])
            if tag in (256, 257):
                value = width if tag == 256 else height
                b[at + 2:at + 12] = struct.pack(order + "HII", 4, 1, value % 2**32)
    return bytes(b)


def _thin_png(rng: random.Random) -> bytes:
    width, height = rng.choice([(1, rng.randint(1, 40000)), (rng.randint(1, 40000), 1),
                                (rng.randint(1, 3000), rng.randint(1, 3000))])
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(bytes(width + 1)) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", idat + squeeze.flush()) + _png_chunk(b"IEND", b""))


# (name, width, height, noise sd, JPEG quality or PNG compression): 20-25 MP camera fields
CAMERA = (("camera-24mp.jpg", 6000, 4000, 30, 100), ("camera-25mp.jpg", 5000, 5000, 40, 100),
          ("camera-12mp.jpg", 4056, 3040, 10, 95), ("camera-20mp.png", 5472, 3648, 12, 1),
          ("camera-25mp.png", 5000, 5000, 6, 1), ("flat-25mp.png", 5000, 5000, 0, 9))


def camera_files(field: np.ndarray, folder: Path, rng: np.random.Generator) -> list[dict]:
    """Write the CAMERA files made from `field` (those within 50 MB) into `folder`."""
    written = []
    for name, width, height, sd, quality in CAMERA:
        image = np.zeros((height, width, 3), np.uint8) if name.startswith("flat") else \
            cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
        if sd:
            noise = rng.normal(0, sd, image.shape).astype(np.int16)
            image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        suffix = Path(name).suffix
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix == ".jpg" else \
            [cv2.IMWRITE_PNG_COMPRESSION, quality]
        data = cv2.imencode(suffix, image, params)[1].tobytes()
        if len(data) <= 50 * 2**20:
            (folder / name).write_bytes(data)
            written.append({"file": name, "mb": round(len(data) / 2**20, 1),
                            "megapixels": round(width * height / 1e6, 1)})
    return written


def make_case(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, str, bytes]:
    """(kind, suffix, bytes) of one random case."""
    suffix = rng.choice(FORMATS)
    data = seeds[suffix]
    kind = rng.choice(["dimensions", "truncated", "flipped", "random", "thin", "dimensions"])
    if kind == "dimensions":
        side = rng.choice([1, 2, 7, 64, 640, 5000, 30000, 65535, 2**31 - 1])
        width = rng.choice([side, rng.randint(0, 70000)])
        height = rng.choice([side, rng.randint(0, 70000)])
        return kind, suffix, _resize_header(data, suffix, width, height)
    if kind == "truncated":
        cut = data[:int(len(data) * rng.random())]
        return kind, suffix, cut + (b"\xff\xd9" if suffix == ".jpg" and rng.random() < .5 else b"")
    if kind == "flipped":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(min(len(b), 256))] = rng.randrange(256)
        return kind, suffix, bytes(b)
    if kind == "random":
        return kind, suffix, rng.randbytes(rng.randint(0, 4096))
    return kind, ".png", _thin_png(rng)


# A fresh interpreter runs the command and reports its peak RSS: on Linux a child's
# ru_maxrss starts from the RSS of the process that spawned it, here the fuzzer's.
MEASURE = ("import os, subprocess, sys\n"
           "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
           "_, status, usage = os.wait4(p.pid, 0)\n"
           "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def run_measured(folder: Path, data_dir: Path, timeout: float) -> dict:
    """`hemascope run` on a folder: exit code, its own peak RSS (MB), seconds."""
    t0 = time.monotonic()
    log = data_dir.with_name(f"{data_dir.name}.log")  # one line per skipped file
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, sys.executable, "-m", "edge",
                                 "run", "-s", f"folder:{folder}", "--data-dir", str(data_dir)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"exit_code": None, "hung_after_s": timeout}
    code, rss_kb = map(int, out.split())
    return {"exit_code": code, "peak_rss_mb": round(rss_kb / 1024, 1),
            "seconds": round(time.monotonic() - t0, 1),
            "stderr_tail": log.read_text(errors="replace")[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of real JPEG fields")
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runner-cases", type=int, default=200,
                        help="cases put in the folder of the measured `hemascope run`")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    fields = sorted(args.images.glob("*.jpg"))
    image = cv2.imdecode(np.fromfile(fields[0], np.uint8), cv2.IMREAD_COLOR)
    seeds = {s: cv2.imencode(s, image)[1].tobytes() for s in FORMATS}
    seeds[".jpg"] = fields[0].read_bytes()
    outcomes: collections.Counter[str] = collections.Counter()
    tracebacks: list[dict] = []
    slowest = (0.0, "")
    work = Path(tempfile.mkdtemp(prefix="fuzz-images-"))
    runner_folder = work / "cases"
    runner_folder.mkdir()
    qc = QCConfig()
    for i in range(args.cases):
        kind, suffix, data = make_case(rng, seeds)
        path = work / f"case{suffix}"
        path.write_bytes(data)
        if i < args.runner_cases:
            (runner_folder / f"{i:05d}-{kind}{suffix}").write_bytes(data)
        t0 = time.perf_counter()
        try:
            decoded = read_image(path)
            assess_image(decoded, qc)
            outcomes[f"{kind}: decoded"] += 1
        except (ValueError, OSError, cv2.error) as exc:
            reason = re.sub(r"\d+(\.\d+)?", "N", str(exc).split(" (")[0])
            outcomes[f"{kind}: refused ({reason})"] += 1
        except Exception as exc:  # what the fuzzing looks for
            tracebacks.append({"case": i, "kind": kind, "suffix": suffix,
                               "error": f"{type(exc).__name__}: {exc}",
                               "where": traceback.format_exc(limit=3)[-500:]})
        seconds = time.perf_counter() - t0
        if seconds > slowest[0]:
            slowest = (seconds, f"case {i} ({kind}, {suffix}, {len(data)} bytes)")
    in_process_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    camera_folder = work / "camera"
    camera_folder.mkdir()
    camera = camera_files(image, camera_folder, np.random.default_rng(args.seed))
    runs = {"cases": {"files": min(args.cases, args.runner_cases),
                      **run_measured(runner_folder, work / "data", timeout=600)},
            "camera": {"files": camera,
                       **run_measured(camera_folder, work / "camera-data", timeout=600)}}
    result = {
        "seed": args.seed, "cases": args.cases,
        "tracebacks": len(tracebacks), "traceback_cases": tracebacks[:20],
        "slowest_case_s": round(slowest[0], 3), "slowest_case": slowest[1],
        "peak_rss_mb_in_process": in_process_mb,  # the cases, before the camera files
        "outcomes": dict(sorted(outcomes.items())),
        "max_runner_peak_rss_mb": max(r.get("peak_rss_mb", float("inf"))
                                      for r in runs.values()),
        "runner": runs,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
