"""The download panel against the real downloader and the local Hub server (tests/support/hubserver.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gemmadesk.core.catalog import Catalog, CatalogEntry, load_catalog
from gemmadesk.core.downloads import RetryPolicy
from gemmadesk.core.hardware import Hardware
from gemmadesk.ui.main_window import MainWindow
from tests.support.hubserver import Fault, HubServer
from tests.support.tiny_gguf import write_gguf

LONG = 120_000  # ms


def catalog_with(entry: CatalogEntry) -> Catalog:
    real = load_catalog()
    return Catalog(real.version, real.architectures, (entry,))


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "served" / "tiny-q4_0.gguf", tensor_bytes=3 * 1024 * 1024 + 4321)


def open_window(qtbot, hw: Hardware, entry: CatalogEntry) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(hardware=hw, catalog=catalog_with(entry))
    qtbot.addWidget(window)
    window.show()
    window.setup_page.view.select_entry(entry.id)
    return window


def test_download_pause_resume_then_one_click_to_chat(
    qtbot, hub: HubServer, gemma3_gguf: Path, desktop_24gb_nvidia: Hardware
) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/gemma-3-270m", gemma3_gguf)
    hub.add_fault(served.filename, Fault("stall", at=16 * 1024 * 1024, stall_s=20))
    entry = hub.entry_for(served, entry_id="test-gemma3", architecture="gemma3")
    window = open_window(qtbot, desktop_24gb_nvidia, entry)
    panel = window.setup_page.panel
    assert panel.download_button.isEnabled()

    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.pause_button.isVisible() and panel.bar.value() > 0, timeout=LONG)
    assert "Downloading" in panel.status.text()
    assert "/s" in panel.status.text()  # speed and ETA shown
    panel.pause_button.click()
    qtbot.waitUntil(lambda: "paused" in panel.status.text(), timeout=LONG)
    assert panel.pause_button.text() == "&Resume"
    assert window.setup.has_partial_download(entry.id)

    panel.pause_button.click()  # resume
    qtbot.waitUntil(lambda: panel.chat_button.isVisible(), timeout=LONG)
    assert "verified" in panel.status.text()
    assert window.store.find_for_entry(entry.id) is not None
    assert hub.bytes_sent(served.filename) < 1.5 * served.size  # resumed, not started over

    panel.chat_button.click()
    assert window.stack.currentWidget() is window.chat_view
    qtbot.waitUntil(lambda: window.chat.report is not None, timeout=LONG)
    assert window.chat_view.model_status.text().startswith("Ready")
    window.close()


def test_failed_download_says_why_and_retry_works(qtbot, hub: HubServer, payload: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/gated-model", payload)
    hub.gate("test/gated-model")
    entry = hub.entry_for(served)
    window = open_window(qtbot, laptop_8gb, entry)
    panel = window.setup_page.panel

    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.download_button.text() == "&Retry", timeout=LONG)
    assert "failed" in panel.status.text()
    assert "token" in panel.status.text().lower() or "access" in panel.status.text().lower()
    assert window.isEnabled()  # non-blocking: no modal dialog

    hub.state.gated.discard("test/gated-model")  # the user was granted access
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.chat_button.isVisible(), timeout=LONG)
    assert window.store.find_for_entry(entry.id) is not None
    window.close()


def test_cancel_keeps_the_partial_and_offers_resume(qtbot, hub: HubServer, payload: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/tiny", payload)
    hub.add_fault(served.filename, Fault("stall", at=1024 * 1024, stall_s=20))
    entry = hub.entry_for(served)
    window = open_window(qtbot, laptop_8gb, entry)
    panel = window.setup_page.panel
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.cancel_button.isVisible() and panel.bar.value() > 0, timeout=LONG)

    def stalled() -> bool:  # the server stalls after 1 MiB: cancel only once that much is on disk
        return any(p.stat().st_size >= 1024 * 1024 for p in window.store.partial_dir().glob("*.part"))

    qtbot.waitUntil(stalled, timeout=LONG)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.download_button.text() == "&Resume download", timeout=LONG)
    assert not window.downloads.active
    assert window.store.find_for_entry(entry.id) is None
    assert panel.discard_button.isVisible(), "cancel keeps the partial and offers to discard it"
    assert re.search(r"\d[\d.,]* (KiB|MiB)", panel.discard_button.text()), "the button says how much space it frees"
    assert "on disk" in panel.status.text()
    partials = list(window.store.partial_dir().glob("*.part"))
    assert partials and partials[0].stat().st_size >= 1024 * 1024

    panel.discard_button.click()
    qtbot.waitUntil(lambda: "Discarded" in panel.status.text(), timeout=LONG)
    assert "freed" in panel.status.text()
    assert not any(window.store.partial_dir().iterdir()), "the partial and its sidecar are deleted"
    assert not window.setup.has_partial_download(entry.id)
    assert panel.download_button.text() == "&Download"
    assert not panel.discard_button.isVisible()
    window.close()


def test_pause_offers_resume_and_discard(qtbot, hub: HubServer, payload: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/tiny", payload)
    hub.add_fault(served.filename, Fault("stall", at=1024 * 1024, stall_s=20))
    entry = hub.entry_for(served)
    window = open_window(qtbot, laptop_8gb, entry)
    panel = window.setup_page.panel
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.pause_button.isVisible() and panel.bar.value() > 0, timeout=LONG)
    panel.pause_button.click()
    qtbot.waitUntil(lambda: "paused" in panel.status.text(), timeout=LONG)
    assert "1.0 MiB on disk" in panel.status.text()
    assert panel.discard_button.isVisible()
    assert not panel.cancel_button.isVisible(), "nothing runs to cancel while paused"
    panel.discard_button.click()
    qtbot.waitUntil(lambda: "Discarded" in panel.status.text(), timeout=LONG)
    assert not window.setup.has_partial_download(entry.id)
    window.close()


def test_a_damaged_download_is_explained_in_words(  # type: ignore[no-untyped-def]
    qtbot, hub: HubServer, payload: Path, laptop_8gb: Hardware, caplog: pytest.LogCaptureFixture
) -> None:
    import re

    served = hub.add_file("test/tiny", payload)
    hub.add_fault(served.filename, Fault("corrupt", at=2 * 1024 * 1024 + 7))
    entry = hub.entry_for(served)
    window = open_window(qtbot, laptop_8gb, entry)
    panel = window.setup_page.panel
    with caplog.at_level("WARNING", logger="gemmadesk.core.downloads"):
        panel.download_button.click()
        qtbot.waitUntil(lambda: panel.download_button.text() == "&Retry", timeout=LONG)
    text = panel.status.text()
    assert "arrived damaged" in text and "download it again" in text
    assert not re.search(r"[0-9a-f]{64}", text), "no hashes on screen"
    assert served.sha256 in caplog.text, "the hashes are in the log"
    window.close()


def test_closing_mid_download_resumes_after_restart(qtbot, hub: HubServer, payload: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    served = hub.add_file("test/tiny", payload)
    hub.add_fault(served.filename, Fault("stall", at=2 * 1024 * 1024, stall_s=20))
    entry = hub.entry_for(served)
    window = open_window(qtbot, laptop_8gb, entry)
    window.setup_page.panel.download_button.click()
    qtbot.waitUntil(lambda: window.setup_page.panel.bar.value() > 0, timeout=LONG)
    window.close()  # pauses the download and waits for the worker: nothing left running
    assert not window.downloads.active

    again = open_window(qtbot, laptop_8gb, entry)
    panel = again.setup_page.panel
    qtbot.waitUntil(lambda: panel.download_button.text() == "&Resume download", timeout=LONG)
    assert "partly downloaded" in panel.status.text()
    assert panel.bar.isVisible() and 600 < panel.bar.value() < 700, "the partial's real progress (2 of 3 MiB)"
    assert panel.bar.format() == "2.0 MiB of 3.0 MiB"
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.chat_button.isVisible(), timeout=LONG)
    assert hub.bytes_sent(served.filename) < 1.5 * served.size
    again.close()


def test_no_network_fails_with_a_clear_message(
    qtbot, monkeypatch: pytest.MonkeyPatch, payload: Path, laptop_8gb: Hardware
) -> None:  # type: ignore[no-untyped-def]
    """HF_ENDPOINT points at a port nobody listens on: the real "no network" path of the downloader
    (with short retry waits, so the test does not sit through the patient default policy)."""
    with HubServer() as hub:
        served = hub.add_file("test/tiny", payload)
        entry = hub.entry_for(served)
        dead = hub.endpoint  # closed when the block ends
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    window = open_window(qtbot, laptop_8gb, entry)
    window.downloads.retry = RetryPolicy(max_failures=3, base_wait_s=0.05, max_wait_s=0.2, connect_timeout_s=5.0)
    panel = window.setup_page.panel
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.download_button.text() == "&Retry", timeout=LONG)
    assert "failed" in panel.status.text()
    assert window.store.find_for_entry(entry.id) is None
    window.close()
