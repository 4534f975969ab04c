"""One chat: the conversation in the history, the prompt the model sees, and the reply as it is saved.

The window, ``gemmadesk-cli chat`` and the API server all drive this class, so they build the same prompt,
save the same rows and follow the same rules::

    session = ChatSession(host, history)          # history=None: nothing saved (the API server)
    session.new(system_prompt="Be brief.")         # or session.open(conversation_id)
    handle = session.send("Hello", params)         # saves the user message, begins the reply row, queues it
    for event in handle: ...                       # or handle.listen(on_event, on_done) (worker thread)
    session.regenerate(params); session.edit(message_id, "new text", params)
    session.run(messages, params)                  # a stateless API turn: same prompt/thinking/stop rules,
                                                   # never trimmed (refused with the numbers: chat.budget)

Rules decided here, once:

- The prompt is the conversation's system prompt (assembled once, from the conversation) followed by its
  turns, oldest first. Thoughts are never fed back.
- Every saved reply is a model turn, also an empty one (a reply stopped while the model was still
  thinking, or one that failed before its first word): the prompt never has two user turns in a row,
  which is the shape the chat template expects.
- The reply row is created (status "partial") before generation, saved at most once per
  ``save_interval_s`` while it streams, and finished as "complete", or "partial" when it was stopped or
  failed (what was generated is kept).
- An edit belongs to this session's conversation: :meth:`edit` refuses a message of another one.
- ``SamplingParams.stop`` strings end the answer (:mod:`gemmadesk.core.chat.stops`).
- Attachments (issue 14): :meth:`send` stores each file in the history's attachment store first (a file
  that cannot be attached, or a kind the loaded model cannot take, is refused before anything is saved),
  then saves the user message referencing them. The prompt of a reloaded conversation re-sends every
  attachment of its turns (their image/audio tokens count when older turns are trimmed); a file gone
  from the store, or of a kind the model loaded now cannot take, is left out with a notice
  (:mod:`gemmadesk.core.chat.media_rules`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from gemmadesk.core.attachments import AttachmentStoreError
from gemmadesk.core.chat.backend import ChatBackend
from gemmadesk.core.chat.budget import reply_budget
from gemmadesk.core.chat.host import WINDOW, HostStatus, ModelHost, RequestHandle
from gemmadesk.core.chat.media_rules import refusal, usable_prompt
from gemmadesk.core.chat.stops import cut_at_stop_strings
from gemmadesk.core.engine.chatformat import THOUGHT_OPEN, split_thoughts
from gemmadesk.core.engine.errors import AttachmentError, NotLoadedError
from gemmadesk.core.history import Conversation, HistoryError, HistoryStore, Message, PartialSaver
from gemmadesk.core.media import MediaError
from gemmadesk.core.speed_log import record_reply
from gemmadesk.core.types import (
    Attachment,
    ChatMessage,
    ContextTrimmed,
    ReplyDone,
    SamplingParams,
    StopReason,
    TextChunk,
)

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 1.0
NOT_LOADED = "No model is loaded yet. Pick an installed model first, or download one."


class ModelChangedError(NotLoadedError):
    """The model a request was accepted for is no longer the loaded one when its turn comes."""


def _budgeted(backend: ChatBackend, params: SamplingParams, count: Callable[[], int]) -> SamplingParams:
    """``params`` with the reply limit of the context rule (:mod:`.budget`) for the local engine. A remote
    server knows its own window and refuses for itself (GemmaDesk's count would only be an estimate)."""
    info = backend.info
    if info.is_remote or info.n_ctx <= 0:
        return params
    return replace(params, max_tokens=reply_budget(count(), info.n_ctx, params.max_tokens))


class ReplyHandle(RequestHandle):
    """A reply's request handle, with the rows it writes."""

    def __init__(self, client: str, conversation_id: int | None, reply_id: int | None,
                 user_message: Message | None = None) -> None:  # fmt: skip
        super().__init__(client, "chat")
        self.conversation_id = conversation_id
        self.reply_id = reply_id  # the history row the reply is saved into (None: not saved)
        self.user_message = user_message  # the row send() saved (None for regenerate/edit/run)


def latest_sampling(rows: Sequence[Message], default: SamplingParams) -> SamplingParams:
    """A conversation's sampling settings: those stored with its latest reply (``default`` when it has none)."""
    for m in reversed(rows):
        if m.role == "assistant" and m.settings:
            return sampling_from_row(m.settings, default)
    return default


def sampling_from_row(settings: dict[str, Any], default: SamplingParams) -> SamplingParams:
    """The sampling settings stored with a reply (``Message.settings``), checked field by field: a value
    of the wrong type (a damaged or hand-edited database) falls back to ``default``'s."""
    values: dict[str, Any] = {}
    for f in fields(SamplingParams):
        if f.name not in settings:
            continue
        value, current = settings[f.name], getattr(default, f.name)
        if f.name == "stop":
            if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
                values["stop"] = tuple(value)
        elif f.name == "seed":
            if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                values["seed"] = value
        elif isinstance(current, bool):
            if isinstance(value, bool):
                values[f.name] = value
        elif isinstance(current, float):
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f.name] = float(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            values[f.name] = value
    return SamplingParams(**{**{f.name: getattr(default, f.name) for f in fields(SamplingParams)}, **values})


def api_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The same prompt rules for messages that come from an API client: all system text joined into one
    leading system message, thoughts left in an assistant message removed."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    out = [ChatMessage("system", system)] if system else []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant" and THOUGHT_OPEN in m.content:
            m = ChatMessage("assistant", split_thoughts(m.content)[0], m.attachments)
        out.append(m)
    return out


class ChatSession:
    """History + prompt + trimming + thinking rules + partial saving, for one conversation at a time."""

    def __init__(
        self,
        host: ModelHost,
        history: HistoryStore | None,
        *,
        client: str = WINDOW,
        save_interval_s: float = SAVE_INTERVAL_S,
    ) -> None:
        self.host = host
        self.history = history
        self.client = client
        self.save_interval_s = save_interval_s
        self._conversation_id: int | None = None

    # ------------------------------------------------------------------ the conversation
    @property
    def conversation_id(self) -> int | None:
        """The open conversation: the one owner of which conversation an edit or a reply belongs to."""
        return self._conversation_id

    def new(self, system_prompt: str = "") -> int:
        history = self._history()
        conv = history.create_conversation(system_prompt=system_prompt, model=self.host.state.model_id)
        self._conversation_id = conv.id
        return conv.id

    def open(self, conversation_id: int) -> Conversation:
        """Make ``conversation_id`` the open conversation (HistoryError if it does not exist)."""
        conv = self._history().get_conversation(conversation_id)
        self._conversation_id = conv.id
        return conv

    def close(self) -> None:
        self._conversation_id = None

    def conversation(self) -> Conversation:
        return self._history().get_conversation(self._require_conversation())

    def messages(self) -> list[Message]:
        return self._history().messages(self._require_conversation())

    def set_system_prompt(self, text: str) -> None:
        self._history().set_system_prompt(self._require_conversation(), text)

    def prompt_messages(self) -> list[ChatMessage]:
        """What the model is given for the open conversation (see the module's rules)."""
        history = self._history()
        cid = self._require_conversation()
        system = history.get_conversation(cid).system_prompt
        out = [ChatMessage("system", system)] if system.strip() else []
        out += [ChatMessage(m.role, m.content, m.attachments) for m in history.messages(cid) if m.role != "system"]
        return out

    # ------------------------------------------------------------------ replies
    def send(
        self, text: str, params: SamplingParams, attachments: Sequence[Attachment] = ()
    ) -> ReplyHandle:
        """Save ``text`` (and ``attachments``) as the user's message (opening a new conversation if none is
        open) and queue the reply. Raises NotLoadedError when no model is loaded or loading, and
        AttachmentError when a file cannot be attached or the loaded model cannot take its kind: nothing is
        saved then. Files not yet in the history's attachment store are copied into it (reads them: the
        window puts them there off its GUI thread first, see :meth:`store_attachment`)."""
        self._require_model()
        history = self._history()
        stored = tuple(self.store_attachment(a) for a in attachments)
        self.check_attachments(stored)
        if self._conversation_id is None:
            self.new()
        cid = self._require_conversation()
        user = history.add_message(cid, "user", text, attachments=stored)
        return self._reply(cid, self.prompt_messages(), params, user)

    def store_attachment(self, attachment: Attachment | str | Path) -> Attachment:
        """``attachment`` as a file in the history's attachment store (copied there if it is not); raises
        AttachmentError with one sentence (not an image or audio file, too large, disk full)."""
        store = self._history().attachments
        if isinstance(attachment, Attachment):
            found = store.find(attachment.sha256)
            if found is not None and Path(attachment.path) == found:
                return attachment
            source: Path = Path(attachment.path)
            name = attachment.name
        else:
            source, name = Path(attachment), ""
        try:
            stored = store.put(source)
        except (MediaError, AttachmentStoreError) as exc:
            raise AttachmentError(str(exc)) from None
        return replace(stored, name=name or stored.name)

    def check_attachments(self, attachments: Sequence[Attachment]) -> None:
        """Raise AttachmentError when the loaded model cannot take one of these kinds of file."""
        state = self.host.state
        for kind in dict.fromkeys(str(a.kind) for a in attachments):
            why = refusal(kind, state.info, state.report)
            if why is not None:
                raise AttachmentError(why)

    def regenerate(self, params: SamplingParams) -> ReplyHandle:
        """Replace the last reply with a new one."""
        self._require_model()
        cid = self._require_conversation()
        remaining = self._history().remove_last_reply(cid)
        if not remaining or remaining[-1].role != "user":
            raise HistoryError("There is no message to answer yet: send one first.")
        return self._reply(cid, self.prompt_messages(), params)

    def edit(self, message_id: int, text: str, params: SamplingParams) -> ReplyHandle:
        """Replace one of your messages of this conversation (and everything after it), then reply anew."""
        self._require_model()
        history = self._history()
        message = history.get_message(message_id)
        if self._conversation_id is None or message.conversation_id != self._conversation_id:
            raise HistoryError("That message belongs to another conversation: open it there to edit it.")
        history.edit_user_message(message_id, text)
        return self._reply(self._conversation_id, self.prompt_messages(), params)

    def run(
        self, messages: Sequence[ChatMessage], params: SamplingParams, *, model_id: str | None = None,
        strict_context: bool = False,
    ) -> ReplyHandle:
        """A stateless turn (the API server): nothing is saved; the same prompt, thinking and stop rules apply.

        ``strict_context`` (API requests): the prompt is never trimmed; with the local engine, a prompt that
        does not fit with the reply asked for is refused with the numbers (:mod:`gemmadesk.core.chat.budget`),
        and ``params.max_tokens`` 0 lets the reply run to the end of the window. ``model_id``: refuse
        (:class:`ModelChangedError`) if another model is loaded by the time the request runs. A request
        stopped before it started ends without events (nothing is evaluated)."""
        prompt = api_messages(messages)
        handle = ReplyHandle(self.client, None, None)

        def job(backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
            if stop.is_set():
                return
            self._check_model(model_id)
            p = params
            if strict_context:
                p = _budgeted(backend, params, lambda: backend.count_prompt_tokens(prompt, params))
            yield from cut_at_stop_strings(backend.chat_stream(prompt, p, stop), p.stop, stop)

        return self._submit(job, handle)

    def complete(
        self, prompt: str, params: SamplingParams, *, model_id: str | None = None, strict_context: bool = False
    ) -> ReplyHandle:
        """A raw completion (``/v1/completions``): no template, nothing saved; the options of :meth:`run`."""
        handle = ReplyHandle(self.client, None, None)

        def job(backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
            if stop.is_set():
                return
            self._check_model(model_id)
            p = _budgeted(backend, params, lambda: backend.count_text_tokens(prompt)) if strict_context else params
            yield from cut_at_stop_strings(backend.complete_stream(prompt, p, stop), p.stop, stop)

        return self._submit(job, handle)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> RequestHandle:
        """Queue a token count; the handle's one event is the count (an int)."""

        def job(backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
            yield backend.count_prompt_tokens(api_messages(messages), params)

        return self.host.submit(job, self.client, handle=RequestHandle(self.client, "count"))

    # ------------------------------------------------------------------ internals
    def _reply(
        self, cid: int, messages: list[ChatMessage], params: SamplingParams, user: Message | None = None
    ) -> ReplyHandle:
        history = self._history()
        reply_id = history.begin_reply(cid, model=self.host.state.model_id, settings=params.to_dict())
        handle = ReplyHandle(self.client, cid, reply_id, user)
        interval = self.save_interval_s

        def job(backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
            saver = PartialSaver(history, reply_id, interval)
            try:
                prompt, notice = usable_prompt(messages, backend.info)
                if notice:
                    yield ContextTrimmed(0, notice)
                stream = cut_at_stop_strings(backend.chat_stream(prompt, params, stop), params.stop, stop)
                for event in stream:
                    if isinstance(event, TextChunk):
                        saver.add(event.kind, event.text)
                    elif isinstance(event, ReplyDone):
                        stopped = event.stats.stop_reason == StopReason.STOPPED
                        history.finish_reply(reply_id, event.answer, event.thoughts, event.stats.to_dict(),
                                             "partial" if stopped else "complete")  # fmt: skip
                        record_reply(self.host.state.report, event.stats)  # this machine's decode speed
                    yield event
            except BaseException:
                try:
                    saver.flush()  # keep what was generated; the row stays "partial"
                except Exception:
                    log.exception("could not save the partial reply %s", reply_id)
                raise

        return self._submit(job, handle)

    def _submit(self, job: Any, handle: ReplyHandle) -> ReplyHandle:
        self.host.submit(job, self.client, handle=handle)
        return handle

    def _require_model(self) -> None:
        if self.host.state.status not in (HostStatus.READY, HostStatus.LOADING) and not self.host.state.queue_depth:
            raise NotLoadedError(NOT_LOADED)

    def _check_model(self, model_id: str | None) -> None:
        loaded = self.host.state.model_id
        if model_id is not None and loaded != model_id:
            now = f"“{loaded}” is loaded now" if loaded else "no model is loaded now"
            raise ModelChangedError(f"The model “{model_id}” was switched off before this request ran ({now}); "
                                    "send it again with the loaded model's id.")  # fmt: skip

    def _require_conversation(self) -> int:
        if self._conversation_id is None:
            raise HistoryError("No conversation is open.")
        return self._conversation_id

    def _history(self) -> HistoryStore:
        if self.history is None:
            raise HistoryError("This session keeps no history.")
        return self.history
