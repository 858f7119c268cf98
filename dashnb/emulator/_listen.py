"""Where the emulator listens, the host its URLs name, and the names its certificate carries.

``localhost`` listens on 127.0.0.1 and, where the machine has it, ::1 on the same port; a
wildcard host (``0.0.0.0``) is named in URLs by its loopback address.
"""

from __future__ import annotations

import errno
import logging
import socket

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _certificate_names(host: str) -> list[str]:
    names = list(_LOOPBACK_NAMES)
    if host in _WILDCARDS:
        # Listening everywhere: other machines reach it by this machine's name.
        names.append(socket.gethostname())
    elif host not in names:
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def _url_host(host: str) -> str:
    """The host the URLs name: the host itself, or loopback for a wildcard (0.0.0.0 is no address to connect to)."""
    return _WILDCARDS.get(host, host)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and (host == "::" or host.lower().startswith("::ffff:")):
            # Dual stack whatever the system's default: `::` answers IPv4 clients too (they
            # appear as ::ffff:a.b.c.d), as a user who asks for every address expects.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host``: ``localhost`` means 127.0.0.1 and, where there is one, ::1.

    Clients resolve ``localhost`` to either (some try ::1 first), so both must answer, on one port.
    """
    if host != "localhost":
        return [_bind(host, port)]
    for _ in range(20):
        v4 = _bind("127.0.0.1", port)
        if not socket.has_ipv6:
            return [v4]
        try:
            return [v4, _bind("::1", v4.getsockname()[1])]
        except OSError as exc:
            v4.close()
            if exc.errno != errno.EADDRINUSE:  # no IPv6 loopback on this machine
                log.debug("localhost listens on 127.0.0.1 only: cannot bind ::1 (%s)", exc)
                return [_bind("127.0.0.1", port)]
            if port:
                raise
            # The kernel's free IPv4 port is taken on ::1: pick another.
    raise OSError(errno.EADDRINUSE, "no port free on both 127.0.0.1 and ::1")
