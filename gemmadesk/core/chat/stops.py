"""Stop strings (``SamplingParams.stop``, OpenAI's ``stop``) for any backend's stream.

The answer is held back only as far as it might be the start of a stop string; when one appears, the text
before it is passed on, the request's stop event is set (generation ends after the current token) and the
final :class:`ReplyDone` carries the answer cut there, with ``stop_reason`` "stop_string". Thoughts are
never cut.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from gemmadesk.core.types import ChunkKind, ReplyDone, StopReason, StreamEvent, TextChunk


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is a proper start of some stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


def cut_at_stop_strings(
    events: Iterable[StreamEvent], stops: Sequence[str], stop: threading.Event
) -> Iterator[StreamEvent]:
    stops = [s for s in stops if s]
    if not stops:
        yield from events
        return
    answer = ""
    sent = 0  # characters of ``answer`` passed on
    cut: int | None = None
    longest = max(len(s) for s in stops)
    for event in events:
        if isinstance(event, TextChunk) and event.kind == ChunkKind.ANSWER:
            if cut is not None:
                continue  # generated after the stop string: dropped
            answer += event.text
            start = max(0, sent - longest + 1)
            found = [i for i in (answer.find(s, start) for s in stops) if i >= 0]
            if found:
                cut = min(found)
                stop.set()
                if cut > sent:
                    yield TextChunk(ChunkKind.ANSWER, answer[sent:cut])
                sent = cut
                continue
            safe = len(answer) - _held_back(answer, stops)
            if safe > sent:
                yield TextChunk(ChunkKind.ANSWER, answer[sent:safe])
                sent = safe
        elif isinstance(event, ReplyDone):
            if cut is None:
                if sent < len(answer):
                    yield TextChunk(ChunkKind.ANSWER, answer[sent:])
                yield event
            else:
                stats = replace(event.stats, stop_reason=StopReason.STOP_STRING)
                yield ReplyDone(answer[:cut].strip(), event.thoughts, stats)
        else:
            yield event
