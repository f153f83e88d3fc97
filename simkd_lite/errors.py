"""Errors written for people: the CLI prints them as one line, never as a traceback.

- `SimKDLiteError` (a `ValueError`): bad input or an unusable environment, explained.
- `describe_os_error` turns an `OSError` from one of our file operations into a sentence that names
  the path and the cause ("no space left on device while writing runs/t/last.pt").
- `writing(path)` wraps a block that writes `path`, raising such a `SimKDLiteError`.

Unexpected errors (a bug in torch or in this package) are deliberately *not* converted: they keep
their traceback so they can be reported.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class SimKDLiteError(ValueError):
    """A problem with the input or the environment; the message says what and how to fix it."""


def first_file_on_the_way(path: str | os.PathLike) -> Path | None:
    """The nearest ancestor of `path` (or `path` itself) that exists and is a file, not a folder."""
    for candidate in [Path(path), *Path(path).parents]:
        if candidate.exists():
            return candidate if not candidate.is_dir() else None
    return None


def describe_os_error(err: OSError, path: str | os.PathLike, action: str = "writing") -> str:
    """One sentence naming `path` and the cause of `err` (an OSError raised while `action` it)."""
    code = err.errno
    if code == errno.ENOSPC:
        return f"no space left on device while {action} {path}"
    if code == errno.EDQUOT:
        return f"disk quota exceeded while {action} {path}"
    if code == errno.EROFS:
        return f"cannot write {path}: it is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied while {action} {path}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = first_file_on_the_way(path)
        if blocker is not None:
            return f"cannot use {path}: {blocker} is a file, not a folder"
    if code == errno.EISDIR:
        return f"{path} is a folder, not a file"
    return f"{err.strerror or err} while {action} {path}"


@contextmanager
def writing(path: str | os.PathLike, action: str = "writing") -> Iterator[None]:
    """Turn an OSError inside the block into a `SimKDLiteError` naming `path` and the cause."""
    try:
        yield
    except OSError as err:
        raise SimKDLiteError(describe_os_error(err, path, action)) from err
