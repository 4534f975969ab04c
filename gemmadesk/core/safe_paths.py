"""Names that come from outside (a command line, a catalog, a Hub or mirror answer) made safe as paths.

A repo id, a file name inside a repo, a revision or a commit id is only ever joined to one of GemmaDesk's
folders after it passed these checks, and every joined path is then resolved and must still lie strictly
inside that folder (:func:`inside`). So ``org/repo/x/../../../../OUTSIDE/f.gguf``, an absolute file name
(``org/repo//abs/path.gguf``), a backslash or a NUL can never make a download land outside the models
folder, whatever a mirror answers.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

__all__ = ["UnsafePathError", "check_commit", "check_filename", "check_repo_id", "check_revision", "inside"]

MAX_NAME = 255  # one path component, as most file systems allow
MAX_PATH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class UnsafePathError(ValueError):
    """A name from outside would not stay inside GemmaDesk's folders; ``str()`` is one sentence for a person."""


def _components(text: str, what: str) -> list[str]:
    """Split a relative, forward-slash path and refuse anything that could climb out or is not portable."""
    shown = ascii(text) if _CONTROL.search(text) else repr(text)
    if not text:
        raise UnsafePathError(f"The {what} is empty.")
    if len(text) > MAX_PATH:
        raise UnsafePathError(f"The {what} is too long ({len(text)} characters).")
    if "\x00" in text or _CONTROL.search(text):
        raise UnsafePathError(f"The {what} {shown} contains control characters; check the name and try again.")
    if "\\" in text:
        raise UnsafePathError(f"The {what} {shown} contains a backslash; use forward slashes for folders.")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise UnsafePathError(f"The {what} {shown} is an absolute path; give the name inside the repository.")
    parts = text.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(
                f"The {what} {shown} contains an empty, '.' or '..' folder; give the plain name inside the "
                "repository."
            )
        if len(part) > MAX_NAME:
            raise UnsafePathError(f"The {what} {shown} has a name longer than {MAX_NAME} characters.")
    return parts


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub allows it (huggingface_hub's own validator) and safe as a folder name."""
    from huggingface_hub.errors import HFValidationError  # imported when needed: not at the app's start-up
    from huggingface_hub.utils import validate_repo_id

    _components(repo_id, "repository id")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UnsafePathError(f"{repo_id!r} is not a valid Hugging Face repository id (ORG/NAME).") from exc
    if repo_id.count("/") != 1:
        raise UnsafePathError(f"{repo_id!r} is not a repository id of the form ORG/NAME.")
    return repo_id


def check_filename(filename: str) -> str:
    """A file inside a repository: relative, forward slashes, no ``..``, no backslash, no NUL."""
    _components(filename, "file name")
    return filename


def check_revision(revision: str) -> str:
    """A branch, tag or commit (may contain slashes, e.g. ``refs/pr/1``), safe as a path below ``refs/``."""
    _components(revision, "revision")
    return revision


def check_commit(commit: str) -> str:
    """A commit id as a server reports it (the Hub: 40 hex digits), used as one folder name in the Hugging
    Face cache: a mirror's answer must be one plain name, never a path."""
    try:
        parts = _components(commit, "commit id")
    except UnsafePathError:
        parts = []
    if len(parts) != 1 or not _SAFE_NAME.match(commit):
        raise UnsafePathError(f"The server answered with an invalid commit id {ascii(commit[:80])}; check the mirror "
                              "in HF_ENDPOINT (or unset it).")
    return commit


def inside(root: Path, *relative: str) -> Path:
    """``root / relative...``, refused unless it resolves (symlinks followed) strictly inside ``root``.

    Each piece of ``relative`` may hold forward-slash folders (checked like a file name). The result is the
    unresolved joined path (what callers create), after checking where it would really land.
    """
    target = Path(root)
    for piece in relative:
        for part in _components(piece, "path"):
            target = target / part
    real_root = Path(root).resolve()
    real = target.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise UnsafePathError(
            f"{PurePosixPath(*relative)} would be written outside {root} (a symlink points elsewhere?); "
            "nothing was written."
        )
    return target
