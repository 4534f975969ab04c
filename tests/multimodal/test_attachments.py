"""The content-addressed attachment store (real files, real folders)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gemmadesk.core.attachments import AttachmentStore, AttachmentStoreError
from gemmadesk.core.media import MAX_IMAGE_BYTES, MediaError
from gemmadesk.core.paths import app_paths
from tests.support.media_files import bmp, png, wav, write


def test_put_copies_under_the_data_folder_named_by_content(tmp_path: Path, gemmadesk_home: Path) -> None:
    store = AttachmentStore()
    assert store.root == app_paths().data_dir / "attachments"
    data = png(32, 24)
    source = write(tmp_path / "pick", "holiday photo.PNG", data)
    att = store.put(source)
    sha = hashlib.sha256(data).hexdigest()
    assert att.kind == "image" and att.mime == "image/png" and att.sha256 == sha
    assert att.path == store.root / sha[:2] / f"{sha}.png"
    assert att.path.read_bytes() == data
    assert str(att.path).startswith(str(gemmadesk_home))
    assert source.read_bytes() == data  # the user's file is left as it was
    assert store.find(sha) == att.path and store.verify(sha)
    assert list(store.hashes()) == [sha]
    assert not [p for p in store.root.rglob("*") if p.name.startswith(".incoming")]


def test_same_content_is_stored_once_and_kind_comes_from_the_bytes(tmp_path: Path) -> None:
    store = AttachmentStore(root=tmp_path / "att")
    one = store.put(write(tmp_path, "a.png", png(10, 10)))
    two = store.put(write(tmp_path, "copy-of-a.jpg", png(10, 10)))  # misnamed: it is a PNG
    assert one == two and two.mime == "image/png"
    audio = store.put(write(tmp_path, "voice.bin", wav(0.2)))
    assert audio.kind == "audio" and audio.path.suffix == ".wav"
    picture = store.put(write(tmp_path, "x.bmp", bmp(8, 8)))
    assert picture.kind == "image" and picture.path.suffix == ".bmp"
    assert sorted(store.hashes()) == sorted({one.sha256, audio.sha256, picture.sha256})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"just some text", "is not an image or audio file"),
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "header is damaged"),
    ],
)
def test_put_refuses_what_is_not_an_image_or_audio(tmp_path: Path, data: bytes, message: str) -> None:
    store = AttachmentStore(root=tmp_path / "att")
    with pytest.raises(MediaError, match=message):
        store.put(write(tmp_path, "file.png", data))
    assert not list(store.hashes())
    assert not [p for p in (tmp_path / "att").rglob("*") if p.is_file()]


def test_put_refuses_folders_missing_files_and_oversized_images(tmp_path: Path) -> None:
    store = AttachmentStore(root=tmp_path / "att")
    with pytest.raises(MediaError, match="is not a file|cannot be read"):
        store.put(tmp_path)
    with pytest.raises(MediaError, match="cannot be read"):
        store.put(tmp_path / "gone.png")
    big = tmp_path / "big.png"
    with big.open("wb") as fh:  # a sparse file: a real size on disk of almost nothing
        fh.write(png(8, 8))
        fh.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(MediaError, match="images can be at most 64 MB"):
        store.put(big)


def test_remove_deletes_only_our_own_files_never_through_links(tmp_path: Path) -> None:
    store = AttachmentStore(root=tmp_path / "att")
    att = store.put(write(tmp_path, "a.png", png(10, 10)))
    precious = write(tmp_path / "users", "precious.png", png(10, 10, seed=3))
    sha = hashlib.sha256(precious.read_bytes()).hexdigest()
    # A link planted in the store under an attachment name, pointing at the user's own file:
    planted = store.root / sha[:2] / f"{sha}.png"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(precious)
    assert store.find(sha) is None and not store.remove(sha)
    assert sha not in set(store.hashes())
    assert precious.exists() and planted.is_symlink()
    assert store.remove(att.sha256) and not att.path.exists()
    assert not store.remove(att.sha256)
    assert not store.remove("../../etc/passwd") and not store.remove("0" * 63)


def test_remove_unused_keeps_what_chats_still_reference(tmp_path: Path) -> None:
    store = AttachmentStore(root=tmp_path / "att")
    keep = store.put(write(tmp_path, "a.png", png(10, 10)))
    drop = store.put(write(tmp_path, "b.png", png(10, 10, seed=1)))
    (store.root / "notes.txt").write_text("not ours")  # unknown files are never touched
    assert store.remove_unused({keep.sha256}) == 1
    assert keep.path.exists() and not drop.path.exists() and (store.root / "notes.txt").exists()


def test_a_symlinked_store_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "attachments").symlink_to(elsewhere)
    store = AttachmentStore(root=tmp_path / "data" / "attachments")
    with pytest.raises(AttachmentStoreError, match="not a plain folder"):
        store.put(write(tmp_path, "a.png", png(10, 10)))
    assert not any(elsewhere.iterdir())


def test_store_folder_that_cannot_be_made_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(AttachmentStoreError, match=r"could not be saved in .*; check that folder\.$"):
        AttachmentStore(root=blocker / "attachments").put(write(tmp_path, "a.png", png(10, 10)))
    assert blocker.read_text() == "a file where the data folder should be"
