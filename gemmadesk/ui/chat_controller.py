"""Chat logic between the views and the core: it drives a :class:`ChatSession` on the window's model host.

The window never talks to llama.cpp itself; it calls these methods and listens to the signals. Every
request (load, reply) runs on the host's worker thread (:mod:`gemmadesk.ui.host_bridge`), which also saves
the reply as it streams; this controller mirrors it into the :class:`TranscriptModel` batch by batch.
"Busy" is tracked here only: a reply is running while ``self._reply`` is set.

Per-conversation sampling settings are stored with each reply (``settings`` of the message) and read back
from the conversation's latest reply; a new conversation starts from the user's defaults (``Settings``).
What is loaded, with which context, is the host's: :attr:`HostBridge.stateChanged` is what views observe.
History failures in these slots (a locked or damaged database) become notices, never tracebacks.

Attachments (issue 14): :attr:`attachment_jobs` stores dropped, pasted and picked files off the GUI thread
(refusing kinds the loaded model cannot take before storing anything, :func:`media_rules.refusal`) and
makes thumbnails; :meth:`send` passes the stored files to the session. A start-up sweep removes attachment
files no chat references (on the thread pool).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from gemmadesk.core.chat import ChatSession, HostState, ReplyHandle, RequestHandle, latest_sampling
from gemmadesk.core.chat.media_rules import refusal
from gemmadesk.core.engine.errors import AttachmentError
from gemmadesk.core.fit import Plan, Verdict
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.model_plan import load_settings, placement_banner, plan_installed
from gemmadesk.core.settings import Settings
from gemmadesk.core.store import InstalledModel, ModelStore
from gemmadesk.core.types import (
    Attachment,
    BackendInfo,
    ContextTrimmed,
    LoadProgress,
    LoadReport,
    LoadSettings,
    SamplingParams,
)
from gemmadesk.ui.attachments import AttachmentJobs
from gemmadesk.ui.conversation_model import ConversationListModel, SearchView
from gemmadesk.ui.history_guard import HISTORY_FAILURES, HistoryGuard
from gemmadesk.ui.host_bridge import HostBridge
from gemmadesk.ui.notice import NoticeLevel
from gemmadesk.ui.setup_controller import SetupController
from gemmadesk.ui.transcript_model import Message, TranscriptModel, message_of

if TYPE_CHECKING:
    from gemmadesk.core.remote import RemoteBackend
    from gemmadesk.ui.remote_controller import RemoteController

log = logging.getLogger(__name__)

class ChatController(QObject):
    busy_changed = Signal(bool)
    model_loading = Signal(str, float)  # model name, fraction 0..1 (-1: loading ended without a model)
    model_ready = Signal(str, str)  # model name, placement banner ("" when fully on the GPU)
    notice = Signal(str, str, str)  # level, what happened, what to do next
    conversation_opened = Signal(int)  # id; read params/system_prompt from the controller
    search_matches = Signal(list, list)  # message ids of the open conversation that match the search, terms
    models_changed = Signal(list)  # [(model id, display name)]

    def __init__(
        self, setup: SetupController, history: HistoryStore, settings: Settings, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.setup = setup
        self.store: ModelStore = setup.store
        self.history = history
        self.settings = settings
        self.bridge = HostBridge(parent=self)
        self.session = ChatSession(self.bridge.host, history)
        self.transcript = TranscriptModel(self)
        self.conversations = ConversationListModel(self)
        self.conversations.rename_requested.connect(self.rename)
        self.params = settings.new_chat_sampling()
        self.system_prompt = settings.system_prompt
        self.model_id: str | None = None  # what the window loaded (or is loading)
        self.report: LoadReport | None = None  # what the window shows as ready; None while loading
        self.remote: RemoteController | None = None  # remote engines (set by the window)
        self.remote_info: BackendInfo | None = None  # what the window shows as ready when it is a remote model
        self._remote_backend: RemoteBackend | None = None  # the remote backend the host uses
        self._pending_remote: RemoteBackend | None = None  # the one handed to the host last
        self._remote_item = ""  # the model box's id of the remote model the host uses
        self._plan: Plan | None = None
        self._load: RequestHandle | None = None
        self._reply: ReplyHandle | None = None
        self._closed = False
        self._query = ""
        self._history_guard = HistoryGuard(history, self._tell)
        self.attachment_jobs = AttachmentJobs(lambda: self.history.attachments, self.attach_refusals, self)
        self.attachment_jobs.failed.connect(self._attach_failed)
        self.attachment_jobs.tasks.run(self.history.sweep_attachments, name="sweep unused attachments",
                                       on_error=lambda e: log.warning("attachment sweep failed: %s", e))
    @property
    def conversation_id(self) -> int | None:
        return self.session.conversation_id

    @property
    def busy(self) -> bool:
        """A reply is being generated: from send until its end reached this thread."""
        return self._reply is not None

    @property
    def host_state(self) -> HostState:
        return self.bridge.state

    def _tell(self, level: NoticeLevel, text: str, next_step: str) -> None:
        self.notice.emit(str(level), text, next_step)

    # ------------------------------------------------------------------ models
    def installed_models(self) -> list[InstalledModel]:
        """Every recorded model, including ones whose file vanished or changed: the switcher lists
        them so that picking one explains the problem instead of the model silently disappearing."""
        return self.store.list()

    def refresh_models(self) -> None:
        remote = self.remote.items() if self.remote is not None else []
        self.models_changed.emit([(m.id, m.display_name) for m in self.installed_models()] + remote)

    def load_settings_for(
        self, model: InstalledModel, n_ctx: int | None = None, plan: Plan | None = None
    ) -> tuple[Plan, LoadSettings]:
        """The fit plan for this machine (:mod:`gemmadesk.core.model_plan`) and the load settings from it."""
        if plan is None:
            if self.setup.hardware is None:
                raise RuntimeError("hardware not inspected yet")
            options = replace(self.setup.options, n_ctx=n_ctx or self.settings.context_length)
            plan = plan_installed(model, self.setup.hardware, options, self.setup.catalog)
        return plan, load_settings(model, plan, self.settings.n_threads)

    def load_model(self, model_id: str, n_ctx: int | None = None) -> None:
        if self.busy:
            self._tell(NoticeLevel.INFO, "A reply is still being written.", "Stop it first, then switch models.")
            return
        if self.remote is not None and self.remote.is_remote(model_id):
            self.remote.use(model_id)  # checks the server, then calls use_remote
            return
        try:
            model = self.store.get(model_id)
            if model.status != "ok":
                what = "is missing" if model.status == "missing" else "changed since it was installed"
                self._tell(NoticeLevel.ERROR, f"The file of {model.display_name} {what}: {model.path}",
                                 "Download it again (File → Models…), or put the original file back.")  # fmt: skip
                return
            plan, settings = self.load_settings_for(model, n_ctx)
        except Exception as exc:
            log.warning("cannot plan %s: %s", model_id, exc)
            self._tell(NoticeLevel.ERROR, f"Cannot open this model: {exc}", "Check the file or download it again.")
            return
        if plan.verdict == Verdict.TOO_LARGE:
            self.notice.emit(
                NoticeLevel.WARNING,
                f"{model.display_name} may not fit: {plan.reason}",
                "Choose a shorter context in the chat settings, or a smaller model.",
            )
        if self._load is not None:
            self._load.stop()  # a newer choice replaces a load still running
        self.model_id = model_id
        self.report = None  # nothing is sent while the new model loads
        self.remote_info = None
        self._plan = plan
        handle = self.bridge.host.load(model_id, settings)
        self._load = handle
        self.model_loading.emit(model.display_name, 0.0)
        self.bridge.relay(handle, self._load_event, self._load_ended, self._load_ended, self)

    @Slot(object)
    def _load_event(self, event: object) -> None:
        if isinstance(event, LoadProgress) and not self._closed and self._load is not None:
            self.model_loading.emit(self._model_name(), event.fraction)

    @Slot(object)
    def _load_ended(self, handle: RequestHandle) -> None:
        """The load (or remote model) request ended, finished or failed: show what the host has loaded now."""
        if self._closed or handle is not self._load:
            return
        self._load = None
        state = self.bridge.state
        remote = state.info if state.ready and state.info is not None and state.info.is_remote else None
        if handle.error is None:
            self._close_remote()  # the host no longer uses the remote backend it had
            if remote is not None:
                self._remote_backend, self._remote_item = self._pending_remote, self.model_id or ""
        if remote is not None and self._remote_item:  # a remote model: the new one, or kept after a failed load
            self.model_id, self.remote_info = self._remote_item, remote
            self.model_ready.emit(self._model_name(), "")
        elif handle.error is None or (state.ready and state.report is not None):  # loaded, or the previous one kept
            self.model_id, self.report = state.model_id, state.report
            if self.report is not None:
                reason = self._plan.reason if self._plan is not None else ""
                self.model_ready.emit(self._model_name(), placement_banner(self.report, reason, self.setup.hardware))
        else:
            self.model_id, self.report = None, None
            self.model_loading.emit("", -1.0)
        if handle.error is not None:
            step = "Try a smaller model or a shorter context; the log has details."
            self._tell(NoticeLevel.ERROR, str(handle.error), step)

    def use_remote(self, backend: RemoteBackend, item: str, name: str) -> None:
        """Make ``backend`` (a model on an OpenAI-compatible server, checked by :class:`RemoteController`) the
        loaded model; ``item`` is its id in the model box, ``name`` what the window calls it. Not while busy."""
        if self._load is not None:
            self._load.stop()
        self.model_id, self.report, self.remote_info, self._plan = item, None, None, None
        self._load = self.bridge.host.use_remote(backend, model_id=backend.model or name)
        self._pending_remote = backend
        self.model_loading.emit(name, 0.0)
        self.bridge.relay(self._load, self._load_event, self._load_ended, self._load_ended, self)

    def _close_remote(self) -> None:
        backend, self._remote_backend, self._remote_item = self._remote_backend, None, ""
        if backend is not None:
            backend.close()

    def _model_name(self) -> str:
        if self.remote is not None and self.model_id and self.remote.is_remote(self.model_id):
            return self.remote.label(self.model_id)
        try:
            return self.store.get(self.model_id).display_name if self.model_id else ""
        except Exception:
            return self.model_id or ""

    def unload_model(self) -> None:
        """Free the loaded model (before its file is deleted); the chat then says no model is loaded."""
        if self._load is not None:
            self._load.stop()
            self._load = None
        self.bridge.host.unload()
        self.model_id, self.report = None, None
        self.model_loading.emit("", -1.0)

    def set_context(self, n_ctx: int) -> None:
        """The chat panel's context length: reload the model with it (the host then reports it)."""
        loaded = self.bridge.state.settings  # (a remote server has a context length of its own)
        if self.model_id and self.remote_info is None and not self.busy and (loaded is None or loaded.n_ctx != n_ctx):
            self.load_model(self.model_id, n_ctx)

    # ------------------------------------------------------------------ conversations
    def refresh_conversations(self, query: str | None = None) -> None:
        if query is not None:
            self._query = query.strip()
        with self._history_guard("list the conversations"):
            convs = self.history.list_conversations()
            found = SearchView.of(self.history.search(self._query, limit=500)) if self._query else SearchView()
            self.conversations.set_conversations([c for c in convs if c.id in found.snippets or not self._query],
                                                 found)  # fmt: skip
            if query is not None and self.conversation_id is not None:  # typed: mark the matches of the open chat
                self._show_matches(self.conversation_id)

    def _show_matches(self, conversation_id: int) -> None:
        found = self.conversations.search
        self.search_matches.emit(list(found.matches.get(conversation_id, [])), list(found.terms))

    def new_conversation(self, keep_settings: bool = False) -> int | None:
        """Start and open a new conversation: with the user's default settings (File → New chat), or with
        what the chat panel shows now (the first message sent with no conversation open)."""
        self.stop()
        if not keep_settings:
            self.params, self.system_prompt = self.settings.new_chat_sampling(), self.settings.system_prompt
        with self._history_guard("start a new conversation"):
            cid = self.session.new(self.system_prompt)
            self._query = ""
            self.refresh_conversations()
            self.open_conversation(cid)
            return cid
        return None

    def open_conversation(self, conversation_id: int) -> None:
        if self.busy:
            self.stop()
        try:
            conv = self.session.open(conversation_id)
            rows = self.session.messages()
        except HISTORY_FAILURES as exc:
            self._tell(NoticeLevel.ERROR, f"Cannot open this conversation: {exc}", "Pick another conversation.")
            return
        self.params = latest_sampling(rows, self.params)  # a conversation without replies keeps the current ones
        self.system_prompt = conv.system_prompt
        running = self._reply.reply_id if self._reply is not None else None
        self.transcript.set_messages([message_of(m, running=running) for m in rows])
        self.conversation_opened.emit(conversation_id)
        if self._query:
            self._show_matches(conversation_id)

    def rename(self, conversation_id: int, title: str) -> None:
        with self._history_guard("rename the conversation"):
            self.history.rename(conversation_id, title)
        self.refresh_conversations()

    def delete(self, conversation_id: int) -> None:
        with self._history_guard("delete the conversation"):
            if conversation_id == self.conversation_id:
                self.stop()
            self.history.delete_conversation(conversation_id)
            if conversation_id == self.conversation_id:
                self.session.close()
                self.transcript.set_messages([])
        self.refresh_conversations()

    def update_settings(self, system_prompt: str, params: SamplingParams) -> None:
        """The open conversation's settings (from the chat panel and the Thinking box)."""
        self.params = params
        if system_prompt != self.system_prompt:
            self.system_prompt = system_prompt
            if self.conversation_id is not None:
                with self._history_guard("save the system prompt"):
                    self.session.set_system_prompt(system_prompt)

    # ------------------------------------------------------------------ attachments
    def attach_refusals(self) -> dict[str, str | None]:
        """Per kind ("image", "audio"): why the loaded model cannot take it (one sentence), or None."""
        state = self.bridge.state
        return {kind: refusal(kind, state.info, state.report) for kind in ("image", "audio")}

    @Slot(str)
    def _attach_failed(self, text: str) -> None:
        self._tell(NoticeLevel.WARNING, text, "")

    # ------------------------------------------------------------------ replies
    def send(self, text: str, attachments: tuple[Attachment, ...] = ()) -> bool:
        """Send ``text`` (with ``attachments``, already stored by :attr:`attachment_jobs`) in the open
        conversation (a new one if none); False when it was not accepted."""
        if not self._ready():
            return False
        try:
            self.session.check_attachments(attachments)
        except AttachmentError as exc:
            self._tell(NoticeLevel.WARNING, str(exc), "Remove the attachments to send the text alone.")
            return False
        if self.conversation_id is None and self.new_conversation(keep_settings=True) is None:
            return False
        with self._history_guard("save your message"):
            try:
                handle = self.session.send(text, self.params, attachments)
            except AttachmentError as exc:
                self._tell(NoticeLevel.WARNING, str(exc), "Remove the attachments to send the text alone.")
                return False
            if handle.user_message is not None:
                self.transcript.append(message_of(handle.user_message))
            self._start(handle)
            self.refresh_conversations()
            return True
        return False

    def edit_and_resend(self, message_id: int, text: str) -> bool:
        """Replace one of your messages of the open conversation and everything after it, then reply."""
        if not self._ready():
            return False
        with self._history_guard("edit the message"):
            handle = self.session.edit(message_id, text, self.params)
            self._show_rows(handle)
            self._start(handle, append=False)
            return True
        return False

    def regenerate(self) -> None:
        if not self._ready() or self.conversation_id is None:
            return
        with self._history_guard("regenerate the reply"):
            handle = self.session.regenerate(self.params)
            self._show_rows(handle)
            self._start(handle, append=False)

    def _show_rows(self, handle: ReplyHandle) -> None:
        rows = self.session.messages()
        self.transcript.set_messages([message_of(m, streaming=m.id == handle.reply_id) for m in rows])

    def stop(self) -> None:
        if self._reply is not None:
            self._reply.stop()

    def _ready(self) -> bool:
        if self.busy:
            return False
        if self.report is None and self.remote_info is None:
            self._tell(NoticeLevel.INFO, "No model is loaded yet.", "Pick an installed model above, or download one.")
            return False
        return True

    def _start(self, handle: ReplyHandle, append: bool = True) -> None:
        if append:
            self.transcript.append(Message("assistant", "", streaming=True, id=handle.reply_id))
        self._reply = handle
        self.bridge.relay(handle, self._reply_event, self._reply_finished, self._reply_failed, self)
        self.busy_changed.emit(True)

    def _shows_reply(self) -> bool:
        """The transcript shows the conversation of the running reply (not another one opened meanwhile)."""
        return self._reply is not None and self._reply.conversation_id == self.conversation_id

    @Slot(object)
    def _reply_event(self, event: object) -> None:
        if self._closed:
            return
        if isinstance(event, ContextTrimmed):
            self._tell(NoticeLevel.INFO, event.notice, "")
        elif self._shows_reply():
            self.transcript.apply_stream_event(event)

    @Slot(object)
    def _reply_finished(self, _handle: object) -> None:
        if self._closed:
            return
        self._reply = None
        self.busy_changed.emit(False)
        self.refresh_conversations()  # also shows what the history found (the reply may have hit the journal)
        self.setup.refresh_measurements()  # the fit list's speeds now include this reply

    @Slot(object)
    def _reply_failed(self, handle: ReplyHandle) -> None:
        if self._closed:
            return
        message = str(handle.error)
        if self._shows_reply():
            self.transcript.update_last(streaming=False, error=message)
        self._reply = None
        self.busy_changed.emit(False)
        self._history_guard.report_notices()
        self._tell(NoticeLevel.ERROR, message, "The conversation is saved; try again or shorten it.")

    def shutdown(self) -> None:
        self._closed = True
        if self.remote is not None:
            self.remote.shutdown()
        self.bridge.shutdown()
        self._close_remote()
        self.attachment_jobs.tasks.close()  # the start-up sweep and thumbnails end before the history closes

    def model_path(self) -> Path | None:
        return self.store.get(self.model_id).path if self.model_id and self.remote_info is None else None
