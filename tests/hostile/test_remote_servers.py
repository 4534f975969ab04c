"""Hostile input around remote servers: the saved list (keys live there: never follow a symlink, never write
through it) and a server's model list (bounded, shown as plain text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.remote import RemoteConfigError, ServerStore
from tests.hostile.conftest import Decoy
from tests.ui.conftest import laptop_8gb  # noqa: F401  (a fixture)


def test_symlinked_file_is_left_alone(tmp_path: Path, decoy: Decoy) -> None:
    path = tmp_path / "servers.json"
    path.symlink_to(decoy.root / "notes.txt")
    store = ServerStore(path)
    assert store.list() == [] and "not a regular file" in store.problems[0]
    with pytest.raises(RemoteConfigError):
        store.add("a", "http://a:1/v1")
    decoy.assert_untouched()


@pytest.mark.slow
def test_a_hostile_model_list_is_bounded_and_shown_as_plain_text(qtbot, laptop_8gb) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A server listing 20,000 models with markup, control and bidi characters in their names: the window's
    model box shows at most MAX_LISTED of them, cleaned and as plain text, and stays responsive."""
    import time

    from PySide6.QtCore import Qt
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from gemmadesk.server import ServerThread
    from gemmadesk.ui.main_window import MainWindow
    from gemmadesk.ui.remote_controller import MAX_LISTED

    name = "<img src='http://127.0.0.1:9/x.png'>\u202eevil\x1b[31m"

    async def models(_request: Request) -> Response:
        return JSONResponse({"data": [{"id": f"{name}{i}", "object": "model"} for i in range(20_000)]})

    with ServerThread(Starlette(routes=[Route("/v1/models", models)])) as http:
        window = MainWindow(hardware=laptop_8gb)
        qtbot.addWidget(window)
        window.remote.add_server("hostile", http.base_url, None)
        box = window.chat_view.model_box
        qtbot.waitUntil(lambda: box.count() > 0, timeout=60_000)
        assert box.count() == MAX_LISTED
        text = box.itemText(0)
        assert "\u202e" not in text and "\x1b" not in text and text.startswith("<img src=")
        started = time.perf_counter()
        window.chat.refresh_models()
        assert time.perf_counter() - started < 1.0
        assert box.findText("evil", Qt.MatchFlag.MatchContains) >= 0
        window.close()
