"""What the loaded model can take as attachments, and what a reloaded conversation sends again (issue 14).

One place decides, for the window, the command line and the server:

- :func:`refusal`: the one sentence (with the next step) when the loaded model cannot take a kind of file
  at all (a text-only model, a Gemma 4 model loaded without its projector, a projector without audio, a
  remote server) — asked before anything is saved, and by the window to enable its attach button.
- :func:`usable_prompt`: a conversation reloaded from the history re-sends its attachments; one whose file
  is gone from the attachment store, or of a kind the model loaded now cannot take (an earlier turn with
  an image, the model now loaded without its projector), is left out of the prompt with a notice instead
  of failing the chat. The newest message's attachments are never dropped for their kind: they are
  refused with :func:`refusal`'s sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from gemmadesk.core.types import Attachment, BackendInfo, ChatMessage, LoadReport

HOW_TO_ADD_VISION = (
    "download its projector: choose the model in the model list, tick “Include the vision projector” and "
    "download (or run `gemmadesk-cli pull MODEL --mmproj`), then load the model again"
)
_KIND_WORDS = {"image": "images", "audio": "audio"}


def supports(info: BackendInfo | None, kind: str) -> bool:
    if info is None:
        return False
    return info.supports_images if kind == "image" else info.supports_audio


def refusal(kind: str, info: BackendInfo | None, report: LoadReport | None) -> str | None:
    """Why the loaded model cannot take ``kind`` ("image" | "audio") attachments, in one sentence with the
    next step; None when it can (or when nothing is loaded: that has its own message)."""
    if info is None or not info.name or supports(info, kind):
        return None
    name, word = info.name, _KIND_WORDS.get(kind, "attachments")
    if info.is_remote:
        return f"“{name}” on the remote server does not take {word} in GemmaDesk; send text, or load a local model."
    if report is not None and report.architecture != "gemma4":
        return f"“{name}” reads text only; load a Gemma 4 model with its projector for images and audio."
    if report is not None and report.mmproj_path is None:
        failed = next((n for n in report.notes if "projector" in n.lower()), "")
        if failed:
            return f"Images and audio are off for “{name}”: {failed}"
        return f"“{name}” was loaded without its projector (mmproj), so it cannot take {word}; {HOW_TO_ADD_VISION}."
    if kind == "audio":
        return (f"The projector of “{name}” takes images but not audio; Gemma 4 E2B, E4B and 12B hear audio, "
                "so load one of those for sound.")
    return f"“{name}” cannot take {word}; load a Gemma 4 model with its projector."


def usable_prompt(
    messages: Sequence[ChatMessage], info: BackendInfo | None, exists: Callable[[Attachment], bool] | None = None
) -> tuple[list[ChatMessage], str]:
    """(the messages with unusable attachments left out, a notice saying which ones — "" if none).
    ``exists``: whether an attachment's file is still there (default: its path is a regular file)."""
    exists = exists or _exists
    missing: list[str] = []
    unsupported: list[str] = []
    out: list[ChatMessage] = []
    last = len(messages) - 1
    for i, m in enumerate(messages):
        keep: list[Attachment] = []
        for att in m.attachments:
            if not exists(att):
                missing.append(att.display_name)
            elif i != last and not supports(info, str(att.kind)):
                unsupported.append(att.display_name)
            else:
                keep.append(att)
        out.append(m if len(keep) == len(m.attachments) else ChatMessage(m.role, m.content, tuple(keep)))
    notices = []
    if missing:
        one = len(missing) == 1
        notices.append(f"{_names(missing)} {'is' if one else 'are'} missing from the attachments folder, so the "
                       f"model did not get {'it' if one else 'them'} this time; attach the file again if it matters.")
    if unsupported:
        notices.append(f"{_names(unsupported)} from earlier messages {'was' if len(unsupported) == 1 else 'were'} "
                       "left out: the model loaded now cannot take that kind of file.")
    return out, " ".join(notices)


def _exists(att: Attachment) -> bool:
    try:
        return Path(att.path).is_file()
    except OSError:
        return False


def _names(names: list[str]) -> str:
    shown = [f"“{n}”" for n in dict.fromkeys(names)]
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
