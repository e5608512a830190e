"""A fault-injecting HTTP proxy between a device and the hub, for sync tests on 127.0.0.1.

Each request (one per connection: the device sends `Connection: close`) meets at most one
fault, drawn from a seeded generator: the request dropped or reset before the hub sees it,
the answer dropped or cut off by a reset after the hub stored it, a delay (longer than the
device's timeout, some of the time), or the request sent to the hub twice at once. With the
hub down the proxy answers 502, as a real reverse proxy would. It listens and forwards on
127.0.0.1 only, stops by itself after --max-seconds, and on exit (SIGTERM or time-out)
writes what it did, by kind, as JSON to --stats.

    python scripts/faultproxy.py --port 18001 --upstream-port 18000 --seed 1 \\
        --drop-request 0.05 --drop-response 0.05 --delay 0.1 --reset-request 0.05 \\
        --reset-response 0.05 --duplicate 0.1 --stats proxy.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
from collections import Counter
from pathlib import Path

KINDS = ("drop_request", "drop_response", "delay", "reset_request", "reset_response",
         "duplicate")
HOST = "127.0.0.1"
IO_TIMEOUT_S = 60


class Proxy:
    def __init__(self, upstream_port: int, probabilities: dict[str, float], seed: int,
                 delay_max_s: float) -> None:
        self.upstream_port = upstream_port
        self.probabilities = probabilities
        self.rng = random.Random(seed)
        self.delay_max_s = delay_max_s
        self.stats: Counter[str] = Counter()

    def draw(self) -> str | None:
        x = self.rng.random()
        for kind in KINDS:
            x -= self.probabilities[kind]
            if x < 0:
                return kind
        return None

    async def forward(self, request: bytes) -> bytes:
        """Send the request to the hub and read its whole answer, or make a 502."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.upstream_port), IO_TIMEOUT_S)
        except OSError:
            self.stats["hub_down_502"] += 1
            return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 27\r\nConnection: close\r\n\r\n"
                    b'{"detail": "hub is down"}\r\n')
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), IO_TIMEOUT_S)
        except OSError:
            answer = b""
        finally:
            writer.close()
        if not answer:  # the hub died while it held the request
            self.stats["hub_cut_502"] += 1
            return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        return answer

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT_S)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            request = head + await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        self.stats["requests"] += 1
        kind = self.draw()
        self.stats[kind or "passed"] += 1
        try:
            if kind in ("drop_request", "reset_request"):
                return self.close(writer, reset=kind == "reset_request")
            if kind == "delay":
                await asyncio.sleep(self.rng.uniform(0.1, self.delay_max_s))
            if kind == "duplicate":
                answer, _ = await asyncio.gather(self.forward(request), self.forward(request))
            else:
                answer = await self.forward(request)
            if kind == "drop_response":
                return self.close(writer, reset=False)
            if kind == "reset_response":
                writer.write(answer[: len(answer) // 2])
                await writer.drain()
                return self.close(writer, reset=True)
            writer.write(answer)
            await writer.drain()
        except OSError:
            pass
        self.close(writer, reset=False)

    @staticmethod
    def close(writer: asyncio.StreamWriter, reset: bool) -> None:
        if reset:  # SO_LINGER 0: the kernel sends RST instead of FIN
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()


async def serve(args: argparse.Namespace) -> Counter[str]:
    proxy = Proxy(args.upstream_port, {k: getattr(args, k) for k in KINDS}, args.seed,
                  args.delay_max)
    server = await asyncio.start_server(proxy.handle, HOST, args.port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening {HOST}:{args.port}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    server.close()
    return proxy.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    for kind in KINDS:
        parser.add_argument(f"--{kind.replace('_', '-')}", dest=kind, type=float, default=0.0,
                            help=f"probability of {kind} per request")
    parser.add_argument("--delay-max", type=float, default=3.0, help="longest delay (s)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this")
    parser.add_argument("--stats", type=Path, help="write fault counts here as JSON on exit")
    args = parser.parse_args()
    stats = asyncio.run(serve(args))
    if args.stats:
        args.stats.write_text(json.dumps({k: stats[k] for k in sorted(stats)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
