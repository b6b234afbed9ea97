"""The consistent-hash ring: which ingesters own hash(tenant, trace id), and who its members are."""

from tracelake.ring.hashring import Ring, quorum, ring_key
from tracelake.ring.members import MemberSource, RingWatcher

__all__ = ["MemberSource", "Ring", "RingWatcher", "quorum", "ring_key"]
