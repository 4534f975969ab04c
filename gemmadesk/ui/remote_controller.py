"""Remote engines in the window: the user's OpenAI-compatible servers and their models, beside local ones.

- The servers are :class:`~gemmadesk.core.remote.ServerStore`'s (``servers.json``, mode 0600, API keys
  included). Their model lists are fetched on the thread pool (at start and when a server is added); each
  model becomes an item of the chat window's model box (``remote:<server id>:<model id>``).
- Choosing one checks the server on the thread pool (reachable, key accepted, certificate trusted, model
  listed) and then makes a :class:`~gemmadesk.core.remote.RemoteBackend` the window's loaded model
  (``ModelHost.use_remote`` through :meth:`ChatController.use_remote`): chat, history, thinking display,
  stop and stats work as with a local model. Every failure is one sentence in the notice strip.
- Nothing here blocks the GUI thread: every network call runs on the thread pool.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from gemmadesk.core.remote import (
    RemoteBackend,
    RemoteError,
    RemoteModel,
    RemoteModelError,
    RemoteTimeouts,
    ServerEntry,
    ServerStore,
)
from gemmadesk.ui.notice import NoticeLevel
from gemmadesk.ui.tasks import TaskError, TaskRunner

if TYPE_CHECKING:
    from gemmadesk.ui.chat_controller import ChatController

log = logging.getLogger(__name__)

PREFIX = "remote:"
PROBE_TIMEOUTS = RemoteTimeouts(connect=5.0, read=15.0, write=15.0)
MAX_LISTED = 200  # models of one server in the model box (a hostile or huge list must not flood it)


def item_id(server_id: str, model_id: str) -> str:
    return f"{PREFIX}{server_id}:{model_id}"


def parse_item(item: str) -> tuple[str, str] | None:
    """(server id, model id) of a remote item of the model box; None for a local model."""
    if not item.startswith(PREFIX):
        return None
    server_id, sep, model_id = item[len(PREFIX) :].partition(":")
    return (server_id, model_id) if sep else None


def list_models(entry: ServerEntry) -> list[RemoteModel]:
    """The server's models (on the thread pool); a RemoteError says what went wrong in one sentence."""
    with RemoteBackend(entry.base_url, api_key=entry.api_key, timeouts=PROBE_TIMEOUTS) as probe:
        return probe.list_models()


@dataclass(frozen=True)
class _Listed:
    server_id: str
    models: list[RemoteModel]


@dataclass(frozen=True)
class _Ready:
    item: str
    name: str
    backend: RemoteBackend


class RemoteController(QObject):
    models_changed = Signal()  # the remote items changed (the model box re-reads them)
    notice = Signal(str, str, str)  # level, what happened, what to do next
    server_added = Signal(object)  # the ServerEntry saved by add_server
    add_failed = Signal(str)  # why add_server did not save (one sentence)

    def __init__(self, chat: ChatController, tasks: TaskRunner, store: ServerStore | None = None,
                 parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.chat = chat
        self.tasks = tasks
        self.store = store if store is not None else ServerStore()
        self.models: dict[str, list[RemoteModel]] = {}
        self.failures: dict[str, str] = {}  # server id → why its models could not be listed
        self.timeouts = RemoteTimeouts()  # for chats (the longest silence accepted: 120 s by default)
        self._closed = False
        chat.remote = self
        self.models_changed.connect(chat.refresh_models)

    # ------------------------------------------------------------------ the model box
    def servers(self) -> list[ServerEntry]:
        return self.store.list()

    def items(self) -> list[tuple[str, str]]:
        """(item id, label) for every listed model; a server whose list failed gets one retry item."""
        out: list[tuple[str, str]] = []
        for entry in self.store.list():
            models = self.models.get(entry.id)
            if models:
                out += [(item_id(entry.id, m.id), f"{m.id} — {entry.name} (remote)") for m in models[:MAX_LISTED]]
            elif entry.id in self.failures:
                out.append((item_id(entry.id, ""), f"{entry.name} (remote): not reachable — choose to retry"))
        return out

    def is_remote(self, item: str) -> bool:
        return parse_item(item) is not None

    def label(self, item: str) -> str:
        parsed = parse_item(item)
        if parsed is None:
            return item
        try:
            entry = self.store.get(parsed[0])
        except KeyError:
            return parsed[1]
        return f"{parsed[1]} on {entry.name}"

    # ------------------------------------------------------------------ listing
    def refresh(self, server_id: str | None = None) -> None:
        """List the models of every server (or one) on the thread pool."""
        for entry in self.store.list():
            if server_id is None or entry.id == server_id:
                self.tasks.run(lambda e=entry: _Listed(e.id, list_models(e)), self._listed,  # type: ignore[misc]
                               self._make_list_failed(entry.id), name=f"list the models of {entry.name}")  # fmt: skip

    def _make_list_failed(self, server_id: str):  # type: ignore[no-untyped-def]
        def failed(error: TaskError) -> None:
            if self._closed:
                return
            self.models.pop(server_id, None)
            self.failures[server_id] = _sentence(error)
            self.models_changed.emit()

        return failed

    @Slot(object)
    def _listed(self, listed: _Listed) -> None:
        if self._closed:
            return
        self.models[listed.server_id] = listed.models
        self.failures.pop(listed.server_id, None)
        self.models_changed.emit()

    # ------------------------------------------------------------------ adding and removing servers
    def add_server(self, name: str, base_url: str, api_key: str | None, expect_model: str | None = None) -> None:
        """Check the server (on the thread pool), then save it: ``server_added`` or ``add_failed``.
        ``expect_model``: a model it must list (a vLLM server started with the command GemmaDesk showed)."""
        key = (api_key or "").strip() or None
        try:
            probe_entry = ServerEntry("probe", name or base_url, _normalized(base_url), key)
        except RemoteError as exc:
            self.add_failed.emit(str(exc))
            return

        def job() -> list[RemoteModel]:
            models = list_models(probe_entry)
            if expect_model and expect_model not in {m.id for m in models}:
                listed = ", ".join(m.id for m in models[:5]) or "no models"
                raise RemoteModelError(f"{probe_entry.base_url} does not serve “{expect_model}” (it lists {listed}). "
                                       "Start it with the command shown, then add it again.")  # fmt: skip
            return models

        def done(models: list[RemoteModel]) -> None:
            if self._closed:
                return
            try:
                entry = self.store.add(name or probe_entry.base_url, probe_entry.base_url, key)
            except (RemoteError, OSError) as exc:
                self.add_failed.emit(str(exc) if isinstance(exc, RemoteError) else f"Could not save the server: {exc}.")
                return
            self.models[entry.id] = models
            self.models_changed.emit()
            self.server_added.emit(entry)

        def failed(error: TaskError) -> None:
            if not self._closed:
                self.add_failed.emit(_sentence(error))

        self.tasks.run(job, done, failed, name=f"check the server {probe_entry.base_url}")

    def remove_server(self, server_id: str) -> None:
        try:
            self.store.remove(server_id)
        except (KeyError, RemoteError, OSError) as exc:
            self.notice.emit(NoticeLevel.ERROR, f"Could not remove the server: {exc}", "")
            return
        self.models.pop(server_id, None)
        self.failures.pop(server_id, None)
        self.models_changed.emit()

    # ------------------------------------------------------------------ choosing a remote model
    def use(self, item: str) -> None:
        """Make the remote model ``item`` the window's model (checked on the thread pool first)."""
        parsed = parse_item(item)
        if parsed is None:
            return
        server_id, model_id = parsed
        try:
            entry = self.store.get(server_id)
        except KeyError:
            self.notice.emit(NoticeLevel.ERROR, "That server is no longer in the list.", "Add it again.")
            return
        if not model_id:  # the retry item of a server that could not be listed
            self.failures.pop(server_id, None)
            self.refresh(server_id)
            return
        known = {m.id: m for m in self.models.get(server_id, [])}
        n_ctx = known[model_id].n_ctx if model_id in known else 0
        name = self.label(item)

        def job() -> _Ready:
            backend = RemoteBackend(entry.base_url, model_id, entry.api_key, n_ctx=n_ctx, timeouts=self.timeouts)
            try:
                with RemoteBackend(entry.base_url, api_key=entry.api_key, timeouts=PROBE_TIMEOUTS) as probe:
                    listed = {m.id for m in probe.list_models()}
                if model_id not in listed:
                    raise RemoteModelError(f"{entry.name} no longer serves “{model_id}”; choose one of its models.")
            except BaseException:
                backend.close()
                raise
            return _Ready(item, name, backend)

        self.tasks.run(job, self._ready, self._use_failed, name=f"connect to {entry.name}")

    @Slot(object)
    def _ready(self, ready: _Ready) -> None:
        if self._closed or self.chat.busy or self.chat.bridge.closed:
            ready.backend.close()
            if self.chat.busy:
                self.notice.emit(NoticeLevel.INFO, "A reply is still being written.",
                                 "Stop it first, then switch models.")  # fmt: skip
            return
        self.chat.use_remote(ready.backend, ready.item, ready.name)

    @Slot(object)
    def _use_failed(self, error: TaskError) -> None:
        if self._closed:
            return
        self.chat.refresh_models()  # the model box shows what is still loaded
        self.notice.emit(NoticeLevel.ERROR, _sentence(error), "Check the server in the model menu, then choose the "
                         "model again.")  # fmt: skip

    def shutdown(self) -> None:
        self._closed = True


def _normalized(base_url: str) -> str:
    from gemmadesk.core.remote import normalize_base_url

    return normalize_base_url(base_url)


def _sentence(error: TaskError) -> str:
    """A RemoteError is already one sentence for the user; anything else is a bug, said as such."""
    if isinstance(error.exc, RemoteError):
        return str(error.exc)
    log.error("remote server check failed: %s\n%s", error, error.trace)
    return f"Talking to the server failed unexpectedly ({error}); the log file has the details."
