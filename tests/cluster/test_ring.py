"""The ring alone: balance, stability when members come and go, replica sets, member sources."""

from __future__ import annotations

import os
import random

import pytest

from tracelake.errors import ConfigError
from tracelake.ring import MemberSource, Ring, RingWatcher, quorum, ring_key

MEMBERS = [f"10.0.0.{i}:9095" for i in range(1, 11)]


def _keys(n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [ring_key("t", rng.randbytes(16)) for _ in range(n)]


def test_quorum_is_a_majority() -> None:
    assert [quorum(rf) for rf in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_keys_spread_evenly_over_members() -> None:
    ring = Ring(MEMBERS, replication_factor=1)
    counts = dict.fromkeys(MEMBERS, 0)
    keys = _keys(50_000)
    for key in keys:
        counts[ring.replicas(key)[0]] += 1
    share = {m: c / len(keys) for m, c in counts.items()}
    assert all(0.07 < s < 0.13 for s in share.values()), share
    owned = ring.ownership()
    assert sum(owned.values()) == pytest.approx(1.0, abs=1e-3)
    for member in MEMBERS:  # the measured shares follow the token ranges
        assert share[member] == pytest.approx(owned[member], abs=0.01)


def test_replica_sets_are_distinct_members_primary_first() -> None:
    ring = Ring(MEMBERS, replication_factor=3)
    primaries = Ring(MEMBERS, replication_factor=1)
    for key in _keys(2000):
        replicas = ring.replicas(key)
        assert len(replicas) == 3 and len(set(replicas)) == 3
        assert set(replicas) <= set(MEMBERS)
        assert replicas[0] == primaries.replicas(key)[0]


def test_fewer_members_than_the_replication_factor_means_every_member() -> None:
    ring = Ring(MEMBERS[:2], replication_factor=3)
    assert ring.effective_replication == 2
    assert sorted(ring.replicas(12345)) == sorted(MEMBERS[:2])
    assert Ring([], replication_factor=3).replicas(12345) == ()


def test_every_process_builds_the_same_ring_from_the_same_members() -> None:
    a = Ring(MEMBERS, replication_factor=3)
    b = Ring(list(reversed(MEMBERS)) + MEMBERS[:1], replication_factor=3)
    assert a == b
    assert all(a.replicas(k) == b.replicas(k) for k in _keys(500))


def test_a_joining_member_takes_keys_only_for_itself() -> None:
    before = Ring(MEMBERS, replication_factor=1)
    newcomer = "10.0.0.99:9095"
    after = Ring([*MEMBERS, newcomer], replication_factor=1)
    keys = _keys(20_000)
    moved = [k for k in keys if before.replicas(k) != after.replicas(k)]
    assert all(after.replicas(k) == (newcomer,) for k in moved)
    assert 0.04 < len(moved) / len(keys) < 0.15  # about 1/11 of the keys


def test_a_leaving_member_hands_on_only_its_own_keys() -> None:
    before = Ring(MEMBERS, replication_factor=3)
    gone = MEMBERS[3]
    after = Ring([m for m in MEMBERS if m != gone], replication_factor=3)
    for key in _keys(5000):
        old, new = before.replicas(key), after.replicas(key)
        if gone not in old:
            assert new == old
        else:  # the survivors keep their order; one new member joins the set
            assert [m for m in old if m != gone] == [m for m in new if m in old]
            assert len(set(new) - set(old)) == 1


def test_the_same_trace_id_in_two_tenants_lands_apart() -> None:
    trace_id = os.urandom(16)
    assert ring_key("a", trace_id) != ring_key("b", trace_id)
    assert ring_key("a", trace_id) == ring_key("a", trace_id)


def test_members_from_static_entries_and_dns() -> None:
    answers = {"ingesters.svc": ["10.1.0.2", "10.1.0.1"]}

    def resolver(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"no such host {host}")
        return answers[host]

    source = MemberSource(["static:9095", "dns+ingesters.svc:9095"], resolver)
    assert source.members() == ["10.1.0.1:9095", "10.1.0.2:9095", "static:9095"]
    del answers["ingesters.svc"]  # DNS down: the last answer stays
    assert source.members() == ["10.1.0.1:9095", "10.1.0.2:9095", "static:9095"]
    with pytest.raises(ConfigError):
        MemberSource(["no-port"])


def test_dns_entries_resolve_through_the_system_resolver() -> None:
    assert MemberSource(["dns+localhost:9095"]).members()[0].endswith(":9095")


def test_the_watcher_rebuilds_the_ring_when_dns_changes() -> None:
    answers = ["10.1.0.1", "10.1.0.2"]
    changes: list[Ring] = []
    watcher = RingWatcher(
        MemberSource(["dns+ingesters:9095"], lambda h, p: list(answers)),
        replication_factor=3,
        on_change=changes.append,
    )
    assert watcher.ring.members == ("10.1.0.1:9095", "10.1.0.2:9095")
    assert watcher.refresh_now() is False and changes == []
    answers.append("10.1.0.3")
    assert watcher.refresh_now() is True
    assert changes == [watcher.ring] and len(watcher.ring.members) == 3
    view = watcher.view()
    assert view["members"] == list(watcher.ring.members) and view["replication_factor"] == 3
