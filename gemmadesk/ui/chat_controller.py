"""Chat logic between the views and the core: conversations (HistoryStore), the model (LlmController).

The window never talks to SQLite or llama.cpp itself; it calls these methods and listens to the
signals. Generation runs on the LLM thread (``gemmadesk.ui.llm_worker``), which also saves the reply
as it streams; this controller mirrors it into the :class:`TranscriptModel` batch by batch.
Per-conversation sampling settings are kept with each reply (``settings`` JSON of the message) and read
back from the conversation's latest reply; the system prompt is a column of the conversation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from gemmadesk.core.engine import LoadReport, ReplyStats, SamplingParams
from gemmadesk.core.fit import FitOptions, Plan, Verdict, plan_entry, plan_for_file
from gemmadesk.core.history import HistoryError, HistoryStore
from gemmadesk.core.store import InstalledModel, ModelStore
from gemmadesk.ui.chat_settings import ConversationSettings
from gemmadesk.ui.conversation_model import ConversationListModel
from gemmadesk.ui.setup_controller import SetupController
from gemmadesk.ui.transcript_model import Message, TranscriptModel

log = logging.getLogger(__name__)


def _to_view(m: Any) -> Message:
    return Message(m.role, m.content, m.thoughts, dict(m.stats), error="", id=m.id)


class ChatController(QObject):
    busy_changed = Signal(bool)
    model_loading = Signal(str, float)  # model name, fraction 0..1
    model_ready = Signal(str, str)  # model name, placement banner ("" when fully on the GPU)
    notice = Signal(str, str, str)  # level, what happened, what to do next
    conversation_opened = Signal(int, object)  # id, ConversationSettings
    models_changed = Signal(list)  # [(model id, display name)]

    def __init__(self, setup: SetupController, history: HistoryStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.store: ModelStore = setup.store
        self.history = history
        self.transcript = TranscriptModel(self)
        self.conversations = ConversationListModel(self)
        self.conversations.rename_requested.connect(self.rename)
        self.conversation_id: int | None = None
        self.settings = ConversationSettings()
        self.model_id: str | None = None
        self.report: LoadReport | None = None
        self._llm: Any = None  # LlmController, created on the first load (it starts a thread)
        self._busy = False
        self._closed = False  # after shutdown() late worker signals are ignored
        self._query = ""

    # ------------------------------------------------------------------ models
    @property
    def llm(self) -> Any:
        if self._llm is None:
            from gemmadesk.ui.llm_worker import LlmController

            self._llm = LlmController(self)
            # To @Slot methods of this GUI-thread object (queued from the LLM thread); slots ignore
            # anything that arrives after shutdown().
            llm = self._llm
            llm.loadProgress.connect(self._load_progress)
            llm.loaded.connect(self._loaded)
            llm.loadFailed.connect(self._load_failed)
            llm.replyChunk.connect(self._chunk)
            llm.replyFinished.connect(self._finished)
            llm.replyFailed.connect(self._reply_failed)
            llm.contextTrimmed.connect(self._trimmed)
        return self._llm

    @property
    def busy(self) -> bool:
        """A reply is being generated (set on send, cleared when its last event reached this thread)."""
        return self._busy

    def installed_models(self) -> list[InstalledModel]:
        """Every recorded model, including ones whose file vanished or changed: the switcher lists
        them so that picking one explains the problem instead of the model silently disappearing."""
        return self.store.list()

    def refresh_models(self) -> None:
        self.models_changed.emit([(m.id, m.display_name) for m in self.installed_models()])

    def plan_for(self, model: InstalledModel, n_ctx: int) -> Plan:
        hw = self.setup.hardware
        if hw is None:
            raise RuntimeError("hardware not inspected yet")
        options = FitOptions(n_ctx=n_ctx)
        if model.entry_id:
            try:
                return plan_entry(self.setup.entry(model.entry_id), hw, options, gguf_path=model.path)
            except KeyError:
                pass  # an entry this catalog no longer lists: plan from the file itself
        return plan_for_file(model.path, hw, options)

    def load_model(self, model_id: str, n_ctx: int | None = None) -> None:
        if self.busy:
            self.notice.emit("info", "A reply is still being written.", "Stop it first, then switch models.")
            return
        try:
            model = self.store.get(model_id)
            if model.status != "ok":
                what = "is missing" if model.status == "missing" else "changed since it was installed"
                self.notice.emit("error", f"The file of {model.display_name} {what}: {model.path}",
                                 "Download it again (File → Models…), or put the original file back.")  # fmt: skip
                return
            plan = self.plan_for(model, n_ctx or self.settings.n_ctx)
        except Exception as exc:
            log.warning("cannot plan %s: %s", model_id, exc)
            self.notice.emit("error", f"Cannot open this model: {exc}", "Check the file or download it again.")
            return
        if plan.verdict == Verdict.TOO_LARGE:
            self.notice.emit(
                "warning",
                f"{model.display_name} may not fit: {plan.reason}",
                "Choose a shorter context in the chat settings, or a smaller model.",
            )
        self.model_id = model_id
        self.report = None  # nothing is sent while the new model loads
        self._plan = plan
        self.model_loading.emit(model.display_name, 0.0)
        self.llm.load(plan.load_settings(model.path, model.mmproj_path))

    @Slot(str)
    def _trimmed(self, text: str) -> None:
        if not self._closed:
            self.notice.emit("info", text, "")

    @Slot(float)
    def _load_progress(self, fraction: float) -> None:
        if self.model_id and not self._closed:
            self.model_loading.emit(self._model_name(), fraction)

    @Slot(object)
    def _loaded(self, report: LoadReport) -> None:
        if self._closed:
            return
        self.report = report
        self.model_ready.emit(self._model_name(), self.placement_banner(report))

    def placement_banner(self, report: LoadReport) -> str:
        """Why the model (partly) runs on the CPU, in words; empty when it is all on the GPU."""
        if report.n_gpu_layers >= report.n_layers + 1 and report.n_gpu_layers > 0:
            return ""
        reason = self._plan.reason if getattr(self, "_plan", None) else ""
        hw = self.setup.hardware
        if report.n_gpu_layers <= 0:
            why = "no GPU that this llama.cpp build can use" if hw is None or not hw.usable_gpus else reason
            return f"Running on the CPU only ({why}). Replies are slower than on a GPU."
        return (
            f"Running partly on the CPU: {report.n_gpu_layers} of {report.n_layers} layers are on the GPU "
            f"({reason}). A shorter context or a smaller model would fit entirely."
        )

    @Slot(str)
    def _load_failed(self, message: str) -> None:
        if self._closed:
            return
        self.model_id = None
        self.model_loading.emit("", -1.0)
        self.notice.emit("error", message, "Try a smaller model or a shorter context; the log has details.")

    def _model_name(self) -> str:
        try:
            return self.store.get(self.model_id).display_name if self.model_id else ""
        except Exception:
            return self.model_id or ""

    # ------------------------------------------------------------------ conversations
    def refresh_conversations(self, query: str | None = None) -> None:
        if query is not None:
            self._query = query.strip()
        convs = self.history.list_conversations()
        if self._query:
            hits = {h.conversation_id for h in self.history.search(self._query, limit=500)}
            convs = [c for c in convs if c.id in hits]
        self.conversations.set_conversations(convs)

    def new_conversation(self) -> int:
        conv = self.history.create_conversation(system_prompt=self.settings.system_prompt, model=self.model_id)
        self._query = ""
        self.refresh_conversations()
        self.open_conversation(conv.id)
        return conv.id

    def open_conversation(self, conversation_id: int) -> None:
        if self.busy:
            self.stop()
        try:
            conv = self.history.get_conversation(conversation_id)
            messages = self.history.messages(conversation_id)
        except HistoryError as exc:
            self.notice.emit("error", str(exc), "Pick another conversation.")
            return
        self.conversation_id = conversation_id
        settings = replace(self.settings)  # a conversation without replies keeps the current settings
        for m in reversed(messages):
            if m.role == "assistant" and m.settings:
                fields = ConversationSettings.__dataclass_fields__
                known = {k: v for k, v in m.settings.items() if k in fields}
                settings = ConversationSettings(**known)
                break
        settings.system_prompt = conv.system_prompt
        self.settings = settings
        self.transcript.set_messages([_to_view(m) for m in messages])
        self.conversation_opened.emit(conversation_id, settings)

    def rename(self, conversation_id: int, title: str) -> None:
        self.history.rename(conversation_id, title)
        self.refresh_conversations()

    def delete(self, conversation_id: int) -> None:
        self.history.delete_conversation(conversation_id)
        if conversation_id == self.conversation_id:
            self.conversation_id = None
            self.transcript.set_messages([])
        self.refresh_conversations()

    def update_settings(self, settings: ConversationSettings) -> None:
        reload = settings.n_ctx != self.settings.n_ctx
        self.settings = settings
        if self.conversation_id is not None:
            self.history.set_system_prompt(self.conversation_id, settings.system_prompt)
        if reload and self.model_id and not self.busy:
            self.load_model(self.model_id, settings.n_ctx)

    # ------------------------------------------------------------------ replies
    def send(self, text: str) -> None:
        if not self._ready():
            return
        if self.conversation_id is None:
            self.new_conversation()
        assert self.conversation_id is not None
        saved = self.history.add_message(self.conversation_id, "user", text)
        self.transcript.append(_to_view(saved))
        self._generate()
        self.refresh_conversations()

    def edit_and_resend(self, row: int, text: str) -> None:
        msg_id = self.transcript.message(row).id
        if not self._ready() or msg_id is None or self.conversation_id is None:
            return
        remaining = self.history.edit_user_message(msg_id, text)
        self.transcript.set_messages([_to_view(m) for m in remaining])
        self._generate()

    def regenerate(self) -> None:
        if not self._ready() or self.conversation_id is None:
            return
        remaining = self.history.remove_last_reply(self.conversation_id)
        self.transcript.set_messages([_to_view(m) for m in remaining])
        self._generate()

    def stop(self) -> None:
        if self._llm is not None:
            self._llm.stop()

    def _ready(self) -> bool:
        if self.busy:
            return False
        if self.report is None:
            self.notice.emit("info", "No model is loaded yet.", "Pick an installed model above, or download one.")
            return False
        return True

    def _generate(self) -> None:
        assert self.conversation_id is not None
        s = self.settings
        params = SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            max_tokens=s.max_tokens,
            thinking=s.thinking,
        )
        messages = self.history.chat_messages(self.conversation_id)
        reply_id = self.history.begin_reply(self.conversation_id, model=self._model_name(), settings=asdict(s))
        self.transcript.append(Message("assistant", "", streaming=True, id=reply_id))
        self._busy = True
        self.llm.generate(messages, params, history=self.history, message_id=reply_id)
        self.busy_changed.emit(True)

    @Slot(str, str)
    def _chunk(self, kind: str, text: str) -> None:
        if self._closed:
            return
        if kind == "thought":
            self.transcript.append_to_last(thought=text)
        else:
            self.transcript.append_to_last(answer=text)

    @Slot(object, str, str)
    def _finished(self, stats: ReplyStats, answer: str, thoughts: str) -> None:
        if self._closed:
            return
        self._busy = False
        self.transcript.update_last(content=answer, thoughts=thoughts, stats=stats.to_dict(), streaming=False)
        self.busy_changed.emit(False)
        self.refresh_conversations()
        self.setup.refresh_measurements()  # the fit list's speeds now include this reply

    @Slot(str)
    def _reply_failed(self, message: str) -> None:
        if self._closed:
            return
        self._busy = False
        self.transcript.update_last(streaming=False, error=message)
        self.busy_changed.emit(False)
        self.notice.emit("error", message, "The conversation is saved; try again or shorten it.")

    def shutdown(self) -> None:
        self._closed = True
        if self._llm is not None:
            self._llm.shutdown()

    def model_path(self) -> Path | None:
        return self.store.get(self.model_id).path if self.model_id else None
