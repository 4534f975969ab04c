"""Make a file really read-only for this process, as a user's read-only history or disk would be.

A normal user: ``chmod 444``. Root ignores permissions, so for root the file gets the immutable attribute
(``chattr +i``: ext4, xfs, btrfs and most Linux file systems). SQLite then opens it read-only and every
write fails with SQLITE_READONLY, exactly as for the user.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def lock(path: Path) -> Callable[[], None]:
    """Make ``path`` read-only; returns the function that makes it writable again."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file read-only as root on this file system (chattr: {done.stderr.strip()})")

    def unlock() -> None:
        subprocess.run(["chattr", "-i", str(path)], check=False)

    return unlock


class ReadOnly:
    """``read_only(path)`` locks a file; ``read_only.unlock(path)`` (or the end of the test) undoes it."""

    def __init__(self) -> None:
        self._undo: dict[Path, Callable[[], None]] = {}

    def __call__(self, path: Path) -> None:
        self._undo[path] = lock(path)

    def unlock(self, path: Path) -> None:
        undo = self._undo.pop(path, None)
        if undo is not None:
            undo()

    def unlock_all(self) -> None:
        for path in list(self._undo):
            self.unlock(path)


@contextmanager
def read_only_files() -> Iterator[ReadOnly]:
    files = ReadOnly()
    try:
        yield files
    finally:
        files.unlock_all()
