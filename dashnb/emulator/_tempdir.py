"""The emulator's temporary directory (its CA file lives there): named with the owning process's
pid and holding an ``flock`` on a file inside for as long as the emulator lives, so that a later
process can tell a dead one's leftovers and sweep them (``_sweep_stale_dirs``).

A pid alone cannot say that: a process in another PID namespace (a container sharing /tmp) has a
pid that means nothing here, so its live emulator looked dead and lost its CA mid-run. The lock
is held through the open file, whatever the namespace, and is released by the kernel when the
process ends however it ends; the sweep deletes only a directory whose lock it can take.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time

log = logging.getLogger(__name__)

_TMP_PREFIX = "dashnb-emulator-"
_STALE_RE = re.compile(re.escape(_TMP_PREFIX) + r"(\d+)-")
_LOCK_NAME = "owner.lock"
# A directory younger than this is never swept: one being set up has no lock yet.
_MIN_AGE_S = 600.0
# A directory without a lock file (left by a dashnb that did not lock) is swept only this old.
_UNLOCKED_MIN_AGE_S = 7 * 24 * 3600.0
_swept = False


def make_dir() -> tuple[str, int]:
    """A new directory for this process's emulator, and the descriptor holding its lock (close it
    after deleting the directory)."""
    path = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")  # mode 0700
    try:
        fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path, fd


def _sweep_stale_dirs() -> None:
    """Delete the temp dirs of emulators whose process is gone (killed, or a kernel restarted
    by force: no exit handler ran). Once per process, only this user's, never a live process's:
    the recorded pid is not running here, the directory is old, and its lock can be taken."""
    global _swept
    if _swept:
        return
    _swept = True
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        m = _STALE_RE.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        path = os.path.join(root, name)
        try:
            st = os.stat(path, follow_symlinks=False)
            if st.st_uid != os.getuid() or not os.path.isdir(path):
                continue
        except OSError:
            continue
        _sweep_if_unowned(path, time.time() - st.st_mtime, m.group(1))


def _sweep_if_unowned(path: str, age_s: float, pid: str) -> None:
    if age_s < _MIN_AGE_S:
        return
    try:
        fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        if age_s >= _UNLOCKED_MIN_AGE_S:
            log.debug("removing %s, left by process %s (no lock file, %.0f days old)", path, pid, age_s / 86400)
            shutil.rmtree(path, ignore_errors=True)
        return
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its emulator runs, in a process this one cannot see
            log.debug("keeping %s: process %s is not visible here, but its emulator holds the lock", path, pid)
            return
        log.debug("removing %s, left by process %s that no longer runs", path, pid)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True
