"""Tiny image files without PIL: write valid PNGs with zlib, and read PNG/JPEG sizes from their headers.

Sample datasets need real image files (TAO's loaders and our preflight open them), but pulling in an imaging
library for a few 32×32 pictures would be a heavy dependency for nothing.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """An RGB PNG with a deterministic gradient (so files differ and digests are stable)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type none
        for x in range(width):
            rows += bytes(((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, (x + y + seed) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows)))
            + chunk(b"IEND", b""))


def write_png(path: str | Path, width: int = 32, height: int = 32, seed: int = 0) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(png_bytes(width, height, seed))
    return p


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG or JPEG bytes; ValueError when the bytes are neither (a corrupt image)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
    raise ValueError("not a PNG or JPEG image")


def read_image_size(path: str | Path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(65536)
    try:
        return image_size(head)
    except ValueError:
        raise ValueError(f"cannot identify image file '{path}'") from None


def list_images(directory: str | Path) -> list[Path]:
    """Top-level image files of a folder, sorted (TAO's loaders do not recurse)."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
