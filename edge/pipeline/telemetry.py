"""Device health snapshots: load, memory, temperature, throttling, power mode.

Each reading comes from whatever the device offers (Linux /proc and /sys everywhere,
`vcgencmd` on a Raspberry Pi, jetson-stats or /sys on a Jetson). A source that is missing or
fails is skipped: telemetry never stops a session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

SYS = Path("/sys")
PROC = Path("/proc")


def _load() -> dict[str, Any]:
    one, five, _ = (float(v) for v in (PROC / "loadavg").read_text().split()[:3])
    return {"load_1m": one, "load_5m": five, "cpus": os.cpu_count()}


def _memory() -> dict[str, Any]:
    info = {}
    for line in (PROC / "meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0])  # kB
    return {"mem_total_mb": round(info["MemTotal"] / 1024),
            "mem_available_mb": round(info["MemAvailable"] / 1024)}


def _temperatures() -> dict[str, Any]:
    temps = {}
    for zone in sorted((SYS / "class" / "thermal").glob("thermal_zone*")):
        kind = (zone / "type").read_text().strip()
        temps[kind] = int((zone / "temp").read_text()) / 1000
    return {"temperature_c": temps} if temps else {}


def _pi_throttling() -> dict[str, Any]:
    """Raspberry Pi firmware flags: under-voltage and throttling, now and since boot."""
    if shutil.which("vcgencmd") is None:
        return {}
    out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                         timeout=2, check=True).stdout
    flags = int(out.strip().split("=")[1], 16)
    return {"throttled_flags": hex(flags), "undervoltage_now": bool(flags & 0x1),
            "throttled_now": bool(flags & 0x4), "throttled_since_boot": bool(flags & 0x40000)}


def _jetson() -> dict[str, Any]:
    """GPU load and power mode on a Jetson (jetson-stats when installed, /sys otherwise)."""
    gpu_load = SYS / "devices" / "gpu.0" / "load"
    if not gpu_load.exists():
        return {}
    out: dict[str, Any] = {"gpu_load_pct": int(gpu_load.read_text()) / 10}
    try:
        from jtop import jtop  # jetson-stats, optional extra `jetson`

        with jtop() as jetson:
            out["power_mode"] = str(jetson.nvpmodel)
    except ImportError:
        if shutil.which("nvpmodel"):
            out["power_mode"] = subprocess.run(["nvpmodel", "-q"], capture_output=True,
                                               text=True, timeout=2, check=True).stdout.strip()
    return out


READERS: tuple[Callable[[], dict[str, Any]], ...] = (
    _load, _memory, _temperatures, _pi_throttling, _jetson)


def snapshot() -> dict[str, Any]:
    """Everything this device can report now; unavailable readings are left out."""
    data: dict[str, Any] = {}
    for reader in READERS:
        try:
            data.update(reader())
        except Exception:  # a broken sensor or tool must never stop a session
            continue
    return data
