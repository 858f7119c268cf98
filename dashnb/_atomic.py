"""Write a result file so that it is either the old file or the whole new one, never a torn mix.

    >>> import os, tempfile
    >>> from dashnb._atomic import write_atomic
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_atomic(os.path.join(d, "r.json"), '{"ok": true}\\n')
    ...     p.read_text()
    '{"ok": true}\\n'

Opening a file with ``"w"`` truncates it first: if the write then fails (a full disk, a file size
limit, Ctrl-C), the previous results are gone and what is left is not valid JSON. Here the new
content goes to a temporary file in the same directory (so the rename cannot cross file
systems), is flushed and ``fsync``-ed, and only then replaces the target (``os.replace`` is
atomic on POSIX and Windows); the directory is synced too, so the rename survives a power cut.
On any failure the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, data: str | bytes, *, encoding: str = "utf-8") -> pathlib.Path:
    """Replace ``path`` with ``data`` (text is encoded with ``encoding``) in one step; return the path.

    The file keeps the mode a new file would get (umask applied), not ``mkstemp``'s 0600.
    """
    target = pathlib.Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    directory = target.parent if str(target.parent) else pathlib.Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(directory)
    return target


def _mode_for(target: pathlib.Path) -> int:
    try:
        return os.stat(target).st_mode & 0o7777  # an existing file keeps its permissions
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Read, not set-and-restore: os.umask() changes it for every thread of the process meanwhile.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _sync_directory(directory: pathlib.Path) -> None:
    # The rename is durable once the directory's entry is on disk. Not every platform or file
    # system can open a directory for fsync (Windows cannot): the replace itself already happened.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
