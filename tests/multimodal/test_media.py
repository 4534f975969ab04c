"""Sniffing attachments from their bytes, and the size/pixel bounds (pure functions)."""

from __future__ import annotations

import struct

import pytest

from gemmadesk.core.media import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES, MediaError, check_media, sniff
from tests.support.media_files import bmp, gif, png, png_header, wav


def _jpeg(width: int, height: int, exif_bytes: int = 0) -> bytes:
    """A JPEG's markers up to its frame header (SOF0), with an APP1 block of ``exif_bytes`` first."""
    out = b"\xff\xd8"
    if exif_bytes:
        out += b"\xff\xe1" + struct.pack(">H", exif_bytes + 2) + b"E" * exif_bytes
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" * 65  # a quantisation table
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return out


@pytest.mark.parametrize(
    ("data", "fmt", "kind", "size"),
    [
        (png(33, 21), "png", "image", (33, 21)),
        (bmp(12, 7), "bmp", "image", (12, 7)),
        (gif(40, 30), "gif", "image", (40, 30)),
        (_jpeg(4032, 3024), "jpeg", "image", (4032, 3024)),
        (_jpeg(800, 600, exif_bytes=30_000), "jpeg", "image", (800, 600)),
        (wav(0.1), "wav", "audio", (0, 0)),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 40, "flac", "audio", (0, 0)),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 20, "mp3", "audio", (0, 0)),
        (b"\xff\xfb\x90\x64" + b"\x00" * 20, "mp3", "audio", (0, 0)),  # MPEG-1 layer III, 128 kbit/s
    ],
)
def test_recognised_formats(data: bytes, fmt: str, kind: str, size: tuple[int, int]) -> None:
    info = check_media(data, len(data), "x")
    assert (info.format, info.kind, (info.width, info.height)) == (fmt, kind, size)
    assert info.mime.startswith(kind) and info.extension.startswith(".")


@pytest.mark.parametrize(
    "head",
    [
        b"plain text",
        b"\xff\xe0\x00\x00random",  # MPEG sync bits but no valid frame header (mtmd itself would try it)
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",  # WebP: mtmd would need ffmpeg
        b"\x00\x00\x00\x18ftypmp42",  # MP4 video
        b"%PDF-1.7",
        b"GGUF\x03\x00\x00\x00",
    ],
)
def test_everything_else_is_refused_by_content_not_name(head: bytes) -> None:
    assert sniff(head) is None
    with pytest.raises(MediaError, match=r"“photo.png” is not an image or audio file GemmaDesk can read; attach PNG"):
        check_media(head, len(head), "photo.png")


def test_decompression_bombs_and_strips_are_refused_from_the_header() -> None:
    with pytest.raises(MediaError, match=r"60,000 × 60,000 pixels; GemmaDesk takes images up to 16,384"):
        check_media(png_header(60_000, 60_000), 1_000, "bomb.png")
    with pytest.raises(MediaError, match="50 megapixels"):
        check_media(png_header(10_000, 6_000), 1_000, "huge.png")
    with pytest.raises(MediaError, match="too long and thin"):
        check_media(png_header(16_000, 10), 1_000, "strip.png")
    assert check_media(png_header(8_000, 6_000), 1_000, "ok.png").width == 8_000  # 48 MP: allowed, scaled down


def test_sizes_are_bounded_per_kind() -> None:
    with pytest.raises(MediaError, match="images can be at most 64 MB"):
        check_media(png_header(100, 100), MAX_IMAGE_BYTES + 1, "big.png")
    with pytest.raises(MediaError, match="audio files can be at most 128 MB"):
        check_media(wav(0.01), MAX_AUDIO_BYTES + 1, "long.wav")


def test_jpeg_size_found_behind_large_metadata_blocks() -> None:
    import io

    from gemmadesk.core.media import check_stream

    data = _jpeg(1, 1)[:2] + b"".join(_jpeg(1, 1, exif_bytes=60_000)[2:60_006] for _ in range(3)) + _jpeg(640, 480)[2:]
    assert check_stream(io.BytesIO(data), len(data), "camera.jpg").width == 640


def test_damaged_headers_are_refused() -> None:
    with pytest.raises(MediaError, match="header is damaged"):
        check_media(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, 28, "a.png")
    with pytest.raises(MediaError, match="header is damaged"):
        check_media(png_header(0, 10), 100, "zero.png")
    with pytest.raises(MediaError, match="header is damaged"):
        check_media(b"\xff\xd8\xff\xe1\x00\x01", 6, "cut.jpg")  # a marker length that cannot be
