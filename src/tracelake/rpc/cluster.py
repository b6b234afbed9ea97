"""The ring and the ingester clients of a distributor or querier, built from the config."""

from __future__ import annotations

from dataclasses import dataclass

from tracelake.config import Config
from tracelake.ring import MemberSource, RingWatcher
from tracelake.rpc.client import ClientPool
from tracelake.rpc.pusher import RingPusher
from tracelake.rpc.recent import RingRecentTraces


@dataclass
class Cluster:
    watcher: RingWatcher
    pool: ClientPool
    timeout: float
    placement_settle: float = 0.0  # how long after a ring change lookups ask every ingester

    def pusher(self) -> RingPusher:
        return RingPusher(self.watcher, self.pool, self.timeout)

    def recent(self) -> RingRecentTraces:
        return RingRecentTraces(self.watcher, self.pool, self.timeout, self.placement_settle)

    def close(self) -> None:
        self.watcher.stop()
        self.pool.close()


def connect(cfg: Config) -> Cluster:
    ring_cfg = cfg.ingester.lifecycler.ring
    pool = ClientPool()
    watcher = RingWatcher(
        MemberSource(ring_cfg.members),
        ring_cfg.replication_factor,
        cfg.ingester.lifecycler.num_tokens,
        ring_cfg.dns_refresh_period,
        on_change=lambda ring: pool.keep_only(ring.members),
    )
    watcher.start()
    ingester = cfg.ingester
    # What an ingester holds is cut after trace_idle_period, its head block after max_block_duration
    # and flushed at the next flush check; the ingester answers for that block until
    # complete_block_timeout, by which time readers' block lists have it (docs/read-path.md).
    settle = (
        ingester.trace_idle_period
        + ingester.max_block_duration
        + 2 * ingester.flush_check_period
        + ingester.complete_block_timeout
    )
    return Cluster(watcher, pool, cfg.ingester_client.remote_timeout, settle)
