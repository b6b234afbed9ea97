"""A consistent-hash ring with virtual tokens, pure and immutable.

Every process (distributor, querier) builds the same ring from the same member list without talking to
the others: a member's tokens are a hash of its address, not random numbers kept in a shared store. A
key is owned by the first ``replication_factor`` distinct members found walking clockwise from it, so
a member joining or leaving moves only the keys next to its own tokens.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

DEFAULT_TOKENS = 128


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ring_key(tenant: str, trace_id: bytes) -> int:
    """The ring position of a trace: the same trace id in two tenants lands apart."""
    return _hash64(tenant.encode() + b"\x00" + trace_id)


def quorum(replication_factor: int) -> int:
    """Replicas that must accept a write: floor(rf/2)+1 (a majority)."""
    return replication_factor // 2 + 1


class Ring:
    def __init__(
        self, members: Iterable[str], replication_factor: int = 1, tokens_per_member: int = DEFAULT_TOKENS
    ) -> None:
        if replication_factor < 1:
            raise ValueError("replication_factor must be at least 1")
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self.replication_factor = replication_factor
        pairs = sorted(
            (_hash64(f"{member}/{i}".encode()), member)
            for member in self.members
            for i in range(tokens_per_member)
        )
        self._tokens = [token for token, _ in pairs]
        self._owners = [member for _, member in pairs]

    @property
    def effective_replication(self) -> int:
        """Replicas a key really gets: the replication factor, or every member when there are fewer."""
        return min(self.replication_factor, len(self.members))

    def replicas(self, key: int) -> tuple[str, ...]:
        """The members owning ``key``, primary first; distinct; empty when the ring has no member."""
        want = self.effective_replication
        if not want:
            return ()
        found: list[str] = []
        n = len(self._tokens)
        start = bisect.bisect_left(self._tokens, key)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if owner not in found:
                found.append(owner)
                if len(found) == want:
                    break
        return tuple(found)

    def ownership(self) -> dict[str, float]:
        """Share of the key space each member owns as primary (the range ending at each of its tokens)."""
        share = dict.fromkeys(self.members, 0.0)
        if not self._tokens:
            return share
        span = 1 << 64
        previous = self._tokens[-1] - span
        for token, owner in zip(self._tokens, self._owners, strict=True):
            share[owner] += (token - previous) / span
            previous = token
        return {member: round(value, 4) for member, value in share.items()}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Ring)
            and self.members == other.members
            and self.replication_factor == other.replication_factor
            and self._tokens == other._tokens
        )

    def __hash__(self) -> int:
        return hash((self.members, self.replication_factor, len(self._tokens)))
