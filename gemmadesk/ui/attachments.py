"""Images and audio in the window (issue 14): attaching files, thumbnails, the large view. Thin Qt glue.

Every file read or decode runs on the thread pool (:class:`~gemmadesk.ui.tasks.TaskRunner`): storing a file
in the attachment store (checked from its bytes, copied, hashed), encoding a pasted picture as PNG, reading
a thumbnail or the large view. Images are read with :class:`QImageReader` scaled while decoding and under
an allocation limit, from files the store has already checked (the format is fixed from their sniffed
type, never guessed again). Only ``QImage`` crosses threads; pixmaps are made on the GUI thread.

:class:`AttachmentJobs` is owned by the chat controller: ``add_paths`` / ``add_image`` report
``prepared(Prepared)`` or ``failed(str)`` (one sentence); ``thumbnail(att)`` returns a cached thumbnail or
requests it (``thumbnail_ready(sha256)`` when it arrives).
"""

from __future__ import annotations

import logging
import wave
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.attachments import AttachmentStore, AttachmentStoreError
from gemmadesk.core.media import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MediaError, check_media_file
from gemmadesk.core.types import Attachment
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.tasks import TaskError, TaskRunner

log = logging.getLogger(__name__)

THUMB_PX = 72  # composer chips and transcript thumbnails (longest side)
VIEW_PX = 2048  # the large view is scaled down to this while decoding
ALLOCATION_LIMIT_MB = 256  # QImageReader refuses images whose decoded size would exceed this
THUMB_CACHE = 256  # thumbnails kept (a few KB each)
MAX_FILES_AT_ONCE = 16
FILE_FILTER = "Images and audio (*.png *.jpg *.jpeg *.gif *.bmp *.wav *.mp3 *.flac);;All files (*)"
_QT_FORMAT = {"image/png": b"png", "image/jpeg": b"jpeg", "image/gif": b"gif", "image/bmp": b"bmp"}


@dataclass(frozen=True)
class Prepared:
    """An attachment stored and ready to send: the file, its thumbnail (images) and a short description."""

    attachment: Attachment
    thumbnail: QImage | None
    detail: str  # "640 × 480 · 120 KB", "0:03 · 96 KB"


def read_image(path: Path, mime: str, max_side: int) -> QImage:
    """Decode a stored image scaled so its longest side is at most ``max_side`` (decoding scaled: a large
    JPEG is never held at full size), in the format it was sniffed as; raises ValueError if it cannot."""
    fmt = _QT_FORMAT.get(mime)
    if fmt is None:
        raise ValueError(f"not an image type GemmaDesk shows: {mime}")
    reader = QImageReader(str(path), QByteArray(fmt))
    reader.setAutoDetectImageFormat(False)
    reader.setDecideFormatFromContent(False)
    reader.setAllocationLimit(ALLOCATION_LIMIT_MB)
    size = reader.size()
    w, h = size.width(), size.height()
    if not size.isValid() or w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
        raise ValueError(f"the image {path.name} has an unusable size")
    if max(size.width(), size.height()) > max_side:
        reader.setScaledSize(size.scaled(QSize(max_side, max_side), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        raise ValueError(f"{path.name} could not be decoded: {reader.errorString()}")
    return image


def _describe(att: Attachment, image: QImage | None, original: QSize | None = None) -> str:
    try:
        size = human_bytes(Path(att.path).stat().st_size)
    except OSError:
        size = ""
    if att.kind == "image":
        dims = f"{original.width()} × {original.height()}" if original is not None and original.isValid() else ""
        return " · ".join(p for p in (dims, size) if p)
    seconds = wav_seconds(Path(att.path)) if att.mime == "audio/wav" else None
    length = f"{int(seconds) // 60}:{int(seconds) % 60:02d}" if seconds is not None else ""
    return " · ".join(p for p in (length, size) if p)


def wav_seconds(path: Path) -> float | None:
    """A WAV file's length from its header (cheap); None when the header cannot say."""
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            return w.getnframes() / rate if rate > 0 else None
    except (OSError, EOFError, wave.Error):
        return None


def prepare_file(store: AttachmentStore, path: Path, refusals: dict[str, str | None]) -> Prepared:
    """(Thread pool.) Check ``path``, refuse a kind the loaded model cannot take (before storing anything),
    store it and make its thumbnail. Raises MediaError / AttachmentStoreError / ValueError: one sentence."""
    info = check_media_file(path)
    why = refusals.get(info.kind)
    if why:
        raise MediaError(why)
    att = store.put(path)
    return _prepared(att)


def prepare_image(store: AttachmentStore, image: QImage, name: str, refusals: dict[str, str | None]) -> Prepared:
    """(Thread pool.) A pasted picture: bounded, encoded as PNG, stored like a file."""
    why = refusals.get("image")
    if why:
        raise MediaError(why)
    if image.isNull():
        raise MediaError("The clipboard holds no picture GemmaDesk can read; copy the image again.")
    w, h = image.width(), image.height()
    if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
        raise MediaError(f"The pasted picture is {w:,} × {h:,} pixels; GemmaDesk takes images up to "
                         f"{MAX_IMAGE_SIDE:,} pixels a side and {MAX_IMAGE_PIXELS // 1_000_000} megapixels.")
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]  # stubs say bytes; PySide6 takes str
        raise MediaError("The pasted picture could not be saved as PNG; save it to a file and attach that.")
    buffer.close()
    return _prepared(store.put_bytes(bytes(data.data()), name))


def _prepared(att: Attachment) -> Prepared:
    if att.kind != "image":
        return Prepared(att, None, _describe(att, None))
    reader = QImageReader(str(att.path), QByteArray(_QT_FORMAT.get(att.mime, b"png")))
    original = reader.size()
    try:
        thumb: QImage | None = read_image(Path(att.path), att.mime, THUMB_PX)
    except ValueError as exc:  # stored, but Qt cannot show it: it is still sent to the model
        log.info("no thumbnail for %s: %s", att.display_name, exc)
        thumb = None
    return Prepared(att, thumb, _describe(att, thumb, original))


class AttachmentJobs(QObject):
    """Attaching and thumbnails on the thread pool; results arrive on the GUI thread as signals."""

    prepared = Signal(object)  # Prepared
    failed = Signal(str)  # one sentence
    thumbnail_ready = Signal(str)  # sha256

    def __init__(self, store: Callable[[], AttachmentStore], refusals: Callable[[], dict[str, str | None]],
                 parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self._store = store
        self._refusals = refusals
        self.tasks = TaskRunner(self)
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        self._asked: set[str] = set()

    def refusal(self) -> str | None:
        """Why nothing can be attached to the loaded model at all (None: it takes images or audio)."""
        why = self._refusals()
        return why.get("image") if why.get("image") and why.get("audio") else None

    @Slot(list)
    def attach_files(self, paths: list[str]) -> None:
        """Files picked or dropped: refused at once when the model takes no files at all."""
        why = self.refusal()
        if why:
            self.failed.emit(why)
        else:
            self.add_paths(paths)

    @Slot(object)
    def attach_image(self, image: object) -> None:
        """A pasted or dropped picture."""
        why = self._refusals().get("image")
        if why:
            self.failed.emit(why)
        elif isinstance(image, QImage):
            self.add_image(image)

    def add_paths(self, paths: Sequence[str | Path]) -> None:
        """Attach files (from the file dialog or a drop); each reports ``prepared`` or ``failed``."""
        if len(paths) > MAX_FILES_AT_ONCE:
            self.failed.emit(f"{len(paths)} files were dropped; attach at most {MAX_FILES_AT_ONCE} at a time.")
            paths = paths[:MAX_FILES_AT_ONCE]
        store, refusals = self._store(), self._refusals()
        for p in paths:
            self.tasks.run(_job(prepare_file, store, Path(p), refusals), self._done, self._error,
                           name=f"attach {Path(p).name}")

    def add_image(self, image: QImage, name: str = "pasted picture.png") -> None:
        """Attach a picture from the clipboard (or dropped as image data)."""
        store, refusals, copy = self._store(), self._refusals(), QImage(image)
        self.tasks.run(lambda: prepare_image(store, copy, name, refusals), self._done, self._error,
                       name="attach a pasted picture")

    def _done(self, prepared: Prepared) -> None:
        if prepared.thumbnail is not None:
            self._keep(prepared.attachment.sha256, prepared.thumbnail)
        self.prepared.emit(prepared)

    def _error(self, error: TaskError) -> None:
        exc = error.exc
        if isinstance(exc, MediaError | AttachmentStoreError | ValueError):
            self.failed.emit(str(exc))
        else:
            log.error("attaching failed: %s\n%s", error, error.trace)
            self.failed.emit(f"The file could not be attached ({type(exc).__name__}: {exc}).")

    # ------------------------------------------------------------------ thumbnails for the transcript
    def thumbnail(self, att: Attachment) -> QImage | None:
        """The cached thumbnail of ``att``, or None (then it is read on the pool; ``thumbnail_ready`` follows)."""
        image = self._thumbs.get(att.sha256)
        if image is not None:
            self._thumbs.move_to_end(att.sha256)
            return image
        if att.kind == "image" and att.sha256 not in self._asked:
            self._asked.add(att.sha256)
            path, mime, sha = Path(att.path), att.mime, att.sha256
            self.tasks.run(lambda: (sha, read_image(path, mime, THUMB_PX)), self._thumb_done,
                           lambda e: log.info("no thumbnail for %s: %s", path.name, e), name="thumbnail")
        return None

    def _thumb_done(self, result: tuple[str, QImage]) -> None:
        sha, image = result
        self._keep(sha, image)
        self.thumbnail_ready.emit(sha)

    def _keep(self, sha: str, image: QImage) -> None:
        self._thumbs[sha] = image
        self._thumbs.move_to_end(sha)
        while len(self._thumbs) > THUMB_CACHE:
            old, _ = self._thumbs.popitem(last=False)
            self._asked.discard(old)


def _job(fn: Callable[..., Prepared], *args: object) -> Callable[[], Prepared]:
    return lambda: fn(*args)


def file_present(att: Attachment) -> bool:
    try:
        return Path(att.path).is_file()
    except OSError:
        return False


class AttachmentStrip(QWidget):
    """A row of attachments: thumbnails (click: view large) and audio labels (click: play in the system's
    player); in the composer each has a remove button. Names are plain text (they come from files)."""

    removed = Signal(str)  # sha256 (composer)
    view_requested = Signal(object)  # Attachment (image)

    def __init__(self, jobs: AttachmentJobs | None, removable: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.removable = removable
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addStretch(1)
        self.items: list[tuple[Attachment, QFrame]] = []
        self._shown: tuple[Attachment, ...] = ()
        if jobs is not None:
            jobs.thumbnail_ready.connect(self._thumbnail_arrived)
        self.setVisible(False)

    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(a for a, _ in self.items)

    def set_attachments(self, attachments: Sequence[Attachment], thumbnails: dict[str, QImage] | None = None) -> None:
        if tuple(attachments) == self._shown:
            return
        for _, item in self.items:
            self._layout.removeWidget(item)
            item.deleteLater()
        self.items = []
        for att in attachments:
            self._add(att, (thumbnails or {}).get(att.sha256))
        self._shown = tuple(attachments)
        self.setVisible(bool(self.items))

    def add(self, prepared: Prepared) -> bool:
        """Add one (the composer); False if the same content is already there."""
        if any(a.sha256 == prepared.attachment.sha256 for a, _ in self.items):
            return False
        self._add(prepared.attachment, prepared.thumbnail, prepared.detail)
        self._shown = self.attachments()
        self.setVisible(True)
        return True

    def remove(self, sha256: str) -> None:
        for i, (att, item) in enumerate(self.items):
            if att.sha256 == sha256:
                self._layout.removeWidget(item)
                item.deleteLater()
                del self.items[i]
                break
        self._shown = self.attachments()
        self.setVisible(bool(self.items))

    def _add(self, att: Attachment, thumb: QImage | None, detail: str = "") -> None:
        item = QFrame()
        item.setObjectName("AttachmentItem")
        item.setStyleSheet("#AttachmentItem { border: 1px solid rgba(127,127,127,0.35); border-radius: 6px }")
        row = QHBoxLayout(item)
        row.setContentsMargins(4, 2, 4, 2)
        present = file_present(att)
        button = QToolButton()
        button.setAutoRaise(True)
        button.setObjectName("AttachmentButton")
        name = att.display_name
        if not present:
            button.setText(f"⚠ {name} (attachment missing)")
            button.setEnabled(False)
            button.setAccessibleName(f"Attachment missing: {name}")
            button.setToolTip("The file is no longer in GemmaDesk's attachments folder; it is not sent to the model.")
        elif att.kind == "image":
            button.setIconSize(QSize(THUMB_PX, THUMB_PX))
            if thumb is None and self.jobs is not None:
                thumb = self.jobs.thumbnail(att)
            if thumb is not None:
                button.setIcon(QPixmap.fromImage(thumb))
            else:
                button.setText("image")
            button.setAccessibleName(f"Image {name}: view it large")
            button.setToolTip(f"{name}{' · ' + detail if detail else ''}\nClick to view it large")
            button.clicked.connect(lambda _=False, a=att: self.view_requested.emit(a))
        else:
            button.setText("♪" if self.removable else f"♪ {name}")  # (emoji fonts are not everywhere)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setAccessibleName(f"Audio {name}: play it")
            button.setToolTip(f"{name}{' · ' + detail if detail else ''}\nClick to play it in your audio player")
            button.clicked.connect(lambda _=False, a=att: play(a))
        row.addWidget(button)
        if self.removable:
            label = QLabel(_elide(name, 24))
            label.setTextFormat(Qt.TextFormat.PlainText)
            row.addWidget(label)
            remove = QToolButton()
            remove.setText("✕")
            remove.setAutoRaise(True)
            remove.setObjectName("RemoveAttachment")
            remove.setAccessibleName(f"Remove {name}")
            remove.setToolTip(f"Remove {name}")
            remove.clicked.connect(lambda _=False, s=att.sha256: self._remove_clicked(s))
            row.addWidget(remove)
        self._layout.insertWidget(len(self.items), item)
        self.items.append((att, item))

    def _remove_clicked(self, sha256: str) -> None:
        self.remove(sha256)
        self.removed.emit(sha256)

    @Slot(str)
    def _thumbnail_arrived(self, sha256: str) -> None:
        if self.jobs is None:
            return
        for att, item in self.items:
            if att.sha256 == sha256:
                button = item.findChild(QToolButton, "AttachmentButton")
                image = self.jobs.thumbnail(att)
                if button is not None and image is not None:
                    button.setText("")
                    button.setIcon(QPixmap.fromImage(image))


def play(att: Attachment) -> None:
    """Open an audio attachment in the system's player (no media library bundled: PySide6-Essentials)."""
    if file_present(att):
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(att.path)))


def _elide(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class ImageViewer(QDialog):
    """An image at up to :data:`VIEW_PX` a side, decoded on the thread pool; opens at once with a
    "Loading…" text. Non-modal; closes with Esc."""

    def __init__(self, att: Attachment, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(att.display_name)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.picture = QLabel("Loading…")
        self.picture.setTextFormat(Qt.TextFormat.PlainText)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setAccessibleName(f"Image {att.display_name}")
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picture)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.resize(900, 700)
        self.image: QImage | None = None
        path, mime = Path(att.path), att.mime
        tasks.run(lambda: read_image(path, mime, VIEW_PX), self._shown, self._failed, name="view image")

    def _shown(self, image: QImage) -> None:
        try:
            self.picture.setPixmap(QPixmap.fromImage(image))
            self.picture.setMinimumSize(min(image.width(), 1600), min(image.height(), 1200))
        except RuntimeError:  # closed before the picture was decoded
            return
        self.image = image

    def _failed(self, error: TaskError) -> None:
        try:
            self.picture.setText(f"The image cannot be shown: {error}")
        except RuntimeError:
            pass
