"""What an attached file really is: image or audio, recognised from its first bytes, never its name.

Every attachment is hostile until checked. Before llama.cpp's decoders (stb_image, miniaudio) see a
file, :func:`check_media` makes sure that

- it is one of the formats GemmaDesk passes on: PNG, JPEG, GIF, BMP images; WAV, MP3, FLAC audio
  (mtmd would otherwise try *anything* it does not recognise as a video through ffmpeg);
- its size is bounded (:data:`MAX_IMAGE_BYTES`, :data:`MAX_AUDIO_BYTES`) and an image's pixel count
  and sides, read from its header, are bounded too (a 60,000 × 60,000 PNG is a few KB on disk but
  14 GB once decoded). Large ordinary photos are fine: mtmd scales them down to what the projector
  takes.

Failures raise :class:`MediaError`, whose ``str()`` is one sentence for the person using the app.
Pure functions, no llama.cpp, no Qt.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from gemmadesk.core.types import Attachment as Attachment  # the types leaf holds it; re-exported here

MediaKind = Literal["image", "audio"]


MiB = 2**20
MAX_IMAGE_BYTES = 64 * MiB
MAX_AUDIO_BYTES = 128 * MiB  # ~ 70 min of 16-bit 16 kHz WAV, or hours of MP3
MAX_IMAGE_PIXELS = 50_000_000  # 50 megapixels: larger than any phone photo, ~150 MB once decoded
MAX_IMAGE_SIDE = 16_384
MAX_ASPECT_RATIO = 50  # mtmd scales the long side down to fit its token budget; extreme strips end at 0 px
SNIFF_BYTES = 64 * 1024
JPEG_SCAN_BYTES = 2 * MiB  # a JPEG's size marker may sit behind EXIF thumbnails and ICC profiles

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "bmp": "image/bmp"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "bmp": ".bmp", "wav": ".wav", "mp3": ".mp3",
              "flac": ".flac"}  # fmt: skip
SUPPORTED_TEXT = "PNG, JPEG, GIF or BMP images and WAV, MP3 or FLAC audio"


class MediaError(ValueError):
    """A file that cannot be attached; ``str()`` says why and what to do, in one sentence."""


@dataclass(frozen=True)
class MediaInfo:
    kind: MediaKind
    format: str  # png | jpeg | gif | bmp | wav | mp3 | flac
    mime: str
    size_bytes: int
    width: int = 0  # images
    height: int = 0

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def _fmt_size(n: int) -> str:
    return f"{n / MiB:.0f} MB" if n >= MiB else f"{n / 1024:.0f} KB"


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes, or None if it is none that GemmaDesk takes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "mp3"
    return None


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio frame header (MPEG 1/2/2.5, layer III) with a valid bitrate and sample rate index.

    mtmd itself accepts any 0xFFEx start; this is stricter so random binaries are not fed to the decoder."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def _image_size(fmt: str, head: bytes) -> tuple[int, int] | None:
    """(width, height) from the header, or None if the header is damaged or the size marker is missing."""
    try:
        if fmt == "png":
            if head[12:16] != b"IHDR":
                return None
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        if fmt == "gif":
            w, h = struct.unpack("<HH", head[6:10])
            return int(w), int(h)
        if fmt == "bmp":
            header_size = struct.unpack("<I", head[14:18])[0]
            if header_size == 12:  # OS/2 BITMAPCOREHEADER
                w, h = struct.unpack("<HH", head[18:22])
                return int(w), int(h)
            w, h = struct.unpack("<ii", head[18:26])
            return abs(int(w)), abs(int(h))
        if fmt == "jpeg":
            return _jpeg_size(head)
    except struct.error:
        return None
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(head):
                return None
            h, w = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return int(w), int(h)
        if length < 2:
            return None
        pos += 2 + length
    return None


def check_media(head: bytes, size_bytes: int, name: str) -> MediaInfo:
    """Check a file from its first :data:`SNIFF_BYTES` bytes and its size; ``name`` is for messages."""
    fmt = sniff(head)
    if fmt is None:
        raise MediaError(f"“{name}” is not an image or audio file GemmaDesk can read; attach {SUPPORTED_TEXT}.")
    if fmt in IMAGE_TYPES:
        if size_bytes > MAX_IMAGE_BYTES:
            raise MediaError(
                f"“{name}” is {_fmt_size(size_bytes)}; images can be at most {_fmt_size(MAX_IMAGE_BYTES)}. "
                "Save a smaller copy (for example as JPEG) and attach that."
            )
        dims = _image_size(fmt, head)
        if dims is None or dims[0] <= 0 or dims[1] <= 0:
            raise MediaError(f"“{name}” looks like a {fmt.upper()} image but its header is damaged; "
                             "open and save it again, then attach the copy.")
        w, h = dims
        if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
            raise MediaError(
                f"“{name}” is {w:,} × {h:,} pixels; GemmaDesk takes images up to {MAX_IMAGE_SIDE:,} pixels a side "
                f"and {MAX_IMAGE_PIXELS // 1_000_000} megapixels. Scale it down and attach the copy."
            )
        if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
            raise MediaError(
                f"“{name}” is {w:,} × {h:,} pixels, too long and thin for the model to see (at most "
                f"{MAX_ASPECT_RATIO}:1). Crop it and attach the pieces."
            )
        return MediaInfo("image", fmt, IMAGE_TYPES[fmt], size_bytes, w, h)
    if size_bytes > MAX_AUDIO_BYTES:
        raise MediaError(
            f"“{name}” is {_fmt_size(size_bytes)}; audio files can be at most {_fmt_size(MAX_AUDIO_BYTES)}. "
            "Cut it into shorter parts."
        )
    return MediaInfo("audio", fmt, AUDIO_TYPES[fmt], size_bytes)


def open_regular(path: str | Path) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading only if it is a regular file: (file, size). A named pipe, device or
    folder is refused without blocking (opening a FIFO for reading would wait for a writer forever)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MediaError(f"“{path.name}” cannot be read ({exc.strerror or exc}); check that it still exists.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise MediaError(f"“{path.name}” is not a file; attach an image or audio file.")
    return os.fdopen(fd, "rb"), st.st_size


def check_media_file(path: str | Path) -> MediaInfo:
    """:func:`check_media` for a file on disk (a missing, unreadable or special file is a :class:`MediaError`)."""
    fh, size = open_regular(path)
    with fh:
        return check_stream(fh, size, Path(path).name)


def check_stream(fh: BinaryIO, size_bytes: int, name: str) -> MediaInfo:
    """:func:`check_media` for an open file (rewound afterwards)."""
    if size_bytes == 0:
        raise MediaError(f"“{name}” is empty; attach {SUPPORTED_TEXT}.")
    head = fh.read(SNIFF_BYTES)
    if sniff(head) == "jpeg" and _jpeg_size(head) is None:
        head += fh.read(JPEG_SCAN_BYTES - len(head))
    fh.seek(0)
    return check_media(head, size_bytes, name)
