"""Who may talk to the server: Host allowlist (DNS rebinding), Origin (other web pages), token.

Checked in this order on every HTTP request, before any WebSocket exists:

1. ``Host`` must name this server: a loopback name, an IP literal, the ``--host`` it binds, or an
   ``--allow-host``. A web page on ``evil.example`` whose name the attacker re-points at 127.0.0.1
   (DNS rebinding) sends ``Host: evil.example:PORT``; that is refused with 421, so the page can
   neither read the demo nor open a WebSocket, even with a matching ``Origin``. An IP literal cannot
   be rebound (rebinding needs a name the attacker controls), so it is always accepted.
2. ``Origin`` (sent by browsers only) must be the server's own origin (``http://`` or ``https://``
   plus the validated Host) or an ``--allow-origin``: 403 otherwise.
3. The token, when the server has one: 401 otherwise.

Behind a reverse proxy the TCP peer is the proxy; [`ForwardedPolicy`][unils.serve.access.ForwardedPolicy]
gives the client's own address (from ``X-Forwarded-For``, trusted only from ``--forwarded-allow-ips``) for the
per-address limit and the logs.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["ForwardedPolicy", "HostPolicy", "host_name", "is_loopback", "token_ok"]

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header without its port (``[::1]:8765`` -> ``::1``); None if malformed."""
    header = header.strip().lower()
    if not header or any(c in header for c in "/@?#\\ \t"):
        return None
    if header.startswith("["):
        end = header.find("]")
        if end < 0 or header[end + 1 :] not in ("",) and not header[end + 1 :].startswith(":"):
            return None
        return header[1:end]
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostPolicy:
    """The Host allowlist and the Origin check of one server.

    Args:
        bind_host: the address the server binds (``--host``).
        allowed_hosts: extra names (``--allow-host``), e.g. the public name a reverse proxy forwards;
            ``"*"`` accepts any Host (only behind a proxy that checks it).
        allowed_origins: browser origins allowed besides the server's own (``--allow-origin``).
    """

    def __init__(
        self, bind_host: str, allowed_hosts: tuple[str, ...] = (), allowed_origins: tuple[str, ...] = ()
    ):
        names = {n.lower().rstrip(".") for n in allowed_hosts}
        if bind_host not in ("", "0.0.0.0", "::"):
            names.add(bind_host.strip("[]").lower())
        self._names = names
        self._any = "*" in names
        self._origins = {o.rstrip("/").lower() for o in allowed_origins}

    def host_ok(self, header: str | None) -> tuple[bool, str]:
        """``(allowed, reason)`` for a request's Host header."""
        if header is None:
            return False, "the request has no Host header"
        name = host_name(header)
        if name is None:
            return False, f"malformed Host header {header!r}"
        if self._any or name in self._names or is_loopback(name) or _is_ip(name):
            return True, ""
        return False, (
            f"Host {name!r} is not this server's (a DNS-rebinding page would send it); a reverse "
            "proxy's public name must be allowed with --allow-host"
        )

    def origin_ok(self, origin: str, host_header: str) -> bool:
        """Whether a browser page at ``origin`` may open a WebSocket (Host already validated)."""
        origin = origin.rstrip("/").lower()
        if origin in self._origins:
            return True
        parts = urlsplit(origin)
        # The demo page served by this server (directly, or through a TLS proxy) has the Host as origin.
        return parts.scheme in ("http", "https") and parts.netloc == host_header.strip().lower()


def token_ok(expected: str | None, supplied: str | None) -> bool:
    """Constant-time token comparison; no token configured means every client is allowed."""
    if expected is None:
        return True
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected.encode())


def _address(entry: str) -> str:
    # One X-Forwarded-For entry without brackets or port: "[::1]:443" -> "::1", "1.2.3.4:80" -> "1.2.3.4".
    entry = entry.strip()
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


class ForwardedPolicy:
    """Which peers may tell the client's address (``X-Forwarded-For``): uvicorn's and gunicorn's rule.

    Args:
        trusted: addresses or networks of trusted reverse proxies (``"10.0.0.0/8"``, ``"::1"``), or
            ``"*"`` for any peer.

    Raises:
        ConfigError: an entry that is neither an address, a network nor ``*``.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._any = False
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in trusted:
            entry = entry.strip()
            if entry == "*":
                self._any = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--forwarded-allow-ips: {entry!r} is neither an IP address, a network (10.0.0.0/8) nor '*'"
                ) from None

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is a trusted proxy."""
        if self._any:
            return True
        try:
            ip = ipaddress.ip_address(_address(address))
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address for a request from ``peer`` with this ``X-Forwarded-For`` value.

        From an untrusted peer the header is ignored (anyone can write it). From a trusted proxy,
        the entries are read right to left (each proxy appends the address it saw) and the first
        that is not a trusted proxy is the client; if all are trusted, the left-most. With ``"*"``,
        the left-most entry.
        """
        if not forwarded_for or not self.trusts(peer):
            return peer
        hosts = [_address(h) for h in forwarded_for.split(",") if h.strip()]
        if not hosts:
            return peer
        if self._any:
            return hosts[0]
        for host in reversed(hosts):
            if not self.trusts(host):
                return host
        return hosts[0]
