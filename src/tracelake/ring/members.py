"""Where the ring's members come from: a static list, DNS names, or both.

``host:port`` is a member as written; ``dns+name:port`` is every A/AAAA record of ``name`` (a Kubernetes
headless service lists one per ready pod), resolved again every ``refresh`` seconds so that scaling the
ingesters changes the ring without restarting the distributors and queriers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from tracelake.errors import ConfigError
from tracelake.ring.hashring import DEFAULT_TOKENS, Ring

log = logging.getLogger(__name__)

DNS_PREFIX = "dns+"
Resolver = Callable[[str, int], list[str]]


def resolve_a(host: str, port: int) -> list[str]:
    """Addresses of ``host`` (A and AAAA records), sorted; IPv6 ones in brackets."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out = set()
    for family, _, _, _, sockaddr in infos:
        address = sockaddr[0]
        out.add(f"[{address}]" if family == socket.AF_INET6 else address)
    return sorted(out)


def _split(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ring member {entry!r} must be host:port or dns+name:port")
    return host, int(port)


class MemberSource:
    """Turns the configured entries into member addresses; DNS failures keep the last answer."""

    def __init__(self, entries: list[str], resolver: Resolver = resolve_a) -> None:
        self.entries = list(entries)
        self.resolver = resolver
        self._last: dict[str, list[str]] = {}
        for entry in self.entries:
            _split(entry.removeprefix(DNS_PREFIX))

    def members(self) -> list[str]:
        out: set[str] = set()
        for entry in self.entries:
            if not entry.startswith(DNS_PREFIX):
                out.add(entry)
                continue
            host, port = _split(entry.removeprefix(DNS_PREFIX))
            try:
                self._last[entry] = [f"{address}:{port}" for address in self.resolver(host, port)]
            except OSError as exc:
                log.warning(
                    "ring member lookup failed; keeping the last answer",
                    extra={"entry": entry, "error": str(exc)},
                )
            out.update(self._last.get(entry, []))
        return sorted(out)


class RingWatcher:
    """Holds the current ring and rebuilds it when the member list changes (DNS entries only)."""

    def __init__(
        self,
        source: MemberSource,
        replication_factor: int,
        tokens_per_member: int = DEFAULT_TOKENS,
        refresh: float = 15.0,
        on_change: Callable[[Ring], None] | None = None,
    ) -> None:
        self.source = source
        self.replication_factor = replication_factor
        self.tokens_per_member = tokens_per_member
        self.refresh = refresh
        self.on_change = on_change
        self.ring = Ring(source.members(), replication_factor, tokens_per_member)
        # When the members last changed (monotonic; a new process counts as a change: it cannot know
        # where traces were placed before it started).
        self.changed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_now(self) -> bool:
        """Resolve again; True when the ring changed."""
        members = self.source.members()
        if tuple(members) == self.ring.members:
            return False
        log.info("ring members changed", extra={"members": ",".join(members)})
        self.ring = Ring(members, self.replication_factor, self.tokens_per_member)
        self.changed_at = time.monotonic()
        if self.on_change is not None:
            self.on_change(self.ring)
        return True

    def start(self) -> None:
        if any(e.startswith(DNS_PREFIX) for e in self.source.entries) and self.refresh > 0:
            self._thread = threading.Thread(target=self._loop, name="ring-dns", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                self.refresh_now()
            except Exception:  # the next period retries; the ring keeps its last members
                log.exception("ring refresh failed")

    def view(self) -> dict:
        """What /status shows: the members, and the share of the key space each one owns."""
        ring = self.ring
        return {
            "replication_factor": ring.replication_factor,
            "entries": self.source.entries,
            "members": list(ring.members),
            "ownership": ring.ownership(),
        }
