"""The emulator's temporary directory (its CA file lives there): named with the owning process's
pid, so a later process can tell a dead one's leftovers and sweep them (``_sweep_stale_dirs``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

log = logging.getLogger(__name__)

_TMP_PREFIX = "dashnb-emulator-"
_STALE_RE = re.compile(re.escape(_TMP_PREFIX) + r"(\d+)-")
_swept = False


def _sweep_stale_dirs() -> None:
    """Delete the temp dirs of emulators whose process is gone (killed, or a kernel restarted
    by force: no exit handler ran). Once per process, only this user's, never a live process's."""
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
            if os.stat(path, follow_symlinks=False).st_uid != os.getuid() or not os.path.isdir(path):
                continue
        except OSError:
            continue
        log.debug("removing %s, left by process %s that no longer runs", path, m.group(1))
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True
