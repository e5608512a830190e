"""Hostile image files made byte by byte (issue #20): PNGs whose header says what it likes."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A grey 8-bit PNG: all-zero rows when `idat` is None (tiny on disk, valid), else the
    given IDAT bytes (b"": none, a header-only file)."""
    if idat is None:
        squeeze = zlib.compressobj(9)
        row = bytes(width + 1)  # filter byte + pixels
        idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                0, 0, 0))
            + (_chunk(b"IDAT", idat) if idat else b"") + _chunk(b"IEND", b""))


def hostile_header() -> bytes:
    """The 69-byte PNG of finding 5: a header claiming 65535x65535 and a few bytes of data."""
    data = png(65535, 65535, zlib.compress(bytes(1), 0))  # one stored byte: 12 bytes
    assert len(data) == 69
    return data
