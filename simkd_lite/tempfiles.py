"""Our temporary files, named so that no file of a user's can be mistaken for one.

Every file we write goes to a temporary file first and is renamed into place (readers never see half
a file). The temporary name is

    .<final name>.<writer's PID>.<6 hex digits>.simkd-tmp      e.g. .last.pt.4242.9f3a1c.simkd-tmp

dot-prefixed (hidden), with the writer's PID and our own suffix. Cleaning up after an interrupted
save removes only names of exactly this form whose writer is no longer running, so a user's
`thesis draft.tmp` or `important.tmp` in the same folder is never touched.
(Imports no torch: the CLI's light modules use it too.)
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from simkd_lite.errors import writing

SUFFIX = ".simkd-tmp"
_OURS = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{6}" + re.escape(SUFFIX) + "$")
# What versions before this naming left (tempfile.mkstemp: NAME.<8 random chars>.tmp), for our own
# file names only; any other *.tmp is someone else's.
_LEGACY = re.compile(r"^(last\.pt|best\.pt|student\.pt|config\.json|metrics\.csv|results\.json|histories\.json)"
                     r"\.[a-z0-9_]{8}\.tmp$")


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name next to `path` (see the module docstring)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}{SUFFIX}")


def is_stale_temporary(path: Path) -> bool:
    """True for a temporary file of ours whose writer has ended (or one left by an older version)."""
    if _LEGACY.match(path.name):
        return True
    found = _OURS.match(path.name)
    if not found or not path.is_file():
        return False
    pid = int(found.group("pid"))
    return pid == os.getpid() or not _running(pid)


def stale_temporaries(folder: Path) -> list[Path]:
    """Our stale temporary files directly in `folder`, sorted."""
    return sorted(p for p in folder.glob("*") if (p.name.endswith(SUFFIX) or p.name.endswith(".tmp"))
                  and is_stale_temporary(p))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def write_atomically(data: bytes | memoryview, path: str | os.PathLike, mode: int = 0o666) -> Path:
    """Write `data` to `path` atomically: our temporary file in the same folder, fsync, rename.

    A failure (full disk, read-only folder, a folder in the way) removes the temporary file and
    raises a one-line `SimKDLiteError` naming `path`.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & ~_umask())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX and Windows
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
