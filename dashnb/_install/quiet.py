"""The log filter `dashnb lab` puts on JupyterLab's terminal, named in
``_jupyter/etc/jupyter/jupyter_server_config.json``.

    >>> import logging
    >>> record = logging.LogRecord("ServerApp", logging.WARNING, "", 0, "Notebook %s is not trusted", ("a",), None)
    >>> QuietLabLog().filter(record)
    False

JupyterLab warns "Notebook NAME is not trusted" each time it opens a notebook that was not
executed in this browser, which is every shipped notebook, every time: the warning means only
that their stored HTML outputs are shown sanitized until the notebook runs here, which is how
they are meant to be read. Said a dozen times it pushes the URL and real problems off the screen,
so the filter drops it and lets everything else through.
"""

from __future__ import annotations

import logging

# Exact format strings (record.msg), so a different message with similar words still shows.
NOISE = frozenset({"Notebook %s is not trusted"})


class QuietLabLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in NOISE
