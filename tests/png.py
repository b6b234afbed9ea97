"""Decode the PNGs Chromium's screenshots produce (8-bit RGB or RGBA, not interlaced) with zlib and
numpy, so a test can look at pixels without adding Pillow."""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode(data: bytes) -> np.ndarray:
    """The image as a (height, width, channels) uint8 array; malformed input raises AssertionError."""
    assert data[:8] == SIGNATURE, "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG: {header}"
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    assert raw.size == height * (stride + 1), "truncated image data"
    lines = raw.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(height):
        out[y] = prior = _unfilter(int(lines[y, 0]), lines[y, 1:], prior, channels)
    return out.reshape(height, width, channels)


def _unfilter(kind: int, line: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one scanline's filter (PNG spec §9): None, Sub and Up vectorised, Average and Paeth by byte."""
    if kind == 0:
        return line
    if kind == 1:  # uint8 cumulative sums wrap modulo 256, as the filter does
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
    if kind == 2:
        return line + prior
    assert kind in (3, 4), f"unknown filter {kind}"
    cur, up = bytearray(line.tobytes()), prior.tobytes()
    for i in range(len(cur)):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            predicted = (left + up[i]) >> 1
        else:
            corner = up[i - bpp] if i >= bpp else 0
            estimate = left + up[i] - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up[i]), abs(estimate - corner)
            predicted = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
        cur[i] = (cur[i] + predicted) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)
