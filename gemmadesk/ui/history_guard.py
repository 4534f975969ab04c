"""History calls in GUI slots: a failure (a locked or damaged database, a full disk) becomes a notice and a
log entry, never a lost traceback; what the history recovered from meanwhile is shown once, when it happens."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gemmadesk.core.engine.errors import EngineError
from gemmadesk.core.history import HistoryError, HistoryStore
from gemmadesk.ui.notice import NoticeLevel

log = logging.getLogger(__name__)

HISTORY_FAILURES = (HistoryError, sqlite3.Error, OSError)
Tell = Callable[[NoticeLevel, str, str], None]  # level, what happened, what to do next


class HistoryGuard:
    """``with guard("rename the conversation"): ...`` around history calls in a slot."""

    def __init__(self, history: HistoryStore, tell: Tell) -> None:
        self.history, self._tell = history, tell

    @contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        try:
            yield
        except HISTORY_FAILURES as exc:
            log.warning("could not %s: %r", what, exc)
            text = str(exc) if isinstance(exc, HistoryError) else f"Could not {what}: the chat history failed ({exc})."
            text = " ".join([text, *self.history.take_notices()])  # with what the history found meanwhile
            self._tell(NoticeLevel.ERROR, text, "Try again; if it keeps failing, the log file has details.")
        except EngineError as exc:
            log.warning("could not %s: %s", what, exc)
            self._tell(NoticeLevel.ERROR, str(exc), "Load a model, then try again.")
        else:
            self.report_notices()

    def report_notices(self) -> None:
        """What the history recovered from since the last look (a damaged database moved aside, new turns kept
        in a journal while it cannot be written, the journal saved): shown once each."""
        notices = self.history.take_notices()
        if notices:
            self._tell(NoticeLevel.WARNING, " ".join(notices), "Nothing was deleted; details are in the log file.")
