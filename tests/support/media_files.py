"""Real image and audio files for the tests, written with the standard library only (no Pillow).

The files are genuine PNG / BMP / GIF / WAV data that llama.cpp's own decoders (stb_image, miniaudio)
read; headers can be made to lie (``png_header``) for the hostile-input tests.
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from pathlib import Path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR of an 8-bit RGB PNG of that size (what sniffing reads)."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A valid RGB PNG: a gradient pattern that differs by ``seed`` (fast even for large sizes)."""
    row_pattern = bytes((x * 7 + seed * 31) % 256 for x in range(width * 3))
    rows = bytearray()
    for y in range(height):
        rows += b"\x00" + (row_pattern[y % 3 :] + row_pattern[: y % 3] if y % 17 else row_pattern)
    return png_header(width, height) + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 1)) + _png_chunk(b"IEND", b"")


def bmp(width: int, height: int, seed: int = 0) -> bytes:
    """A valid 24-bit BMP."""
    row = bytes((x * 5 + seed) % 256 for x in range(width * 3))
    row += b"\x00" * ((4 - len(row) % 4) % 4)
    pixels = row * height
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def gif(width: int, height: int) -> bytes:
    """A valid one-colour GIF89a."""
    out = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\xff\x00\x00\x00\x00\x00"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    # LZW with minimum code size 2: clear code, then the end code (every pixel takes colour 0)
    out += b"\x02\x02\x44\x01\x00" + b"\x3b"
    return out


def wav(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> bytes:
    """A valid 16-bit PCM WAV with a sine tone."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        n = int(seconds * rate)
        frame = [struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) * channels for i in range(n)]
        f.writeframes(b"".join(frame))
    return buf.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path
