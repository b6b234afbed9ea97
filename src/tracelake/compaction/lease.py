"""Who runs a job: one lease object per input block, created with ``write_if_absent`` (S3
``If-None-Match: *``), so two compactors never merge the same block at once.

A lease is ``<tenant>/<block>/compactor.lease.<generation>`` holding the owner and an expiry. The
newest generation counts. A free block gets generation 0; an expired lease (its owner died) is taken
over by creating the next generation, which only one contender can create. A compactor restarted
under the same ``instance_id`` takes its own leases back at once. Leases live inside the input
block's folder, so they disappear with it; ``list_blocks`` ignores them.

Why leases rather than hashing jobs onto a member list: the members need no ring or membership
service, only the bucket; and two compactors that plan from different block lists (one polled before
a job finished, one after) still cannot take overlapping inputs, since ownership is per block. A job
renews its leases while it merges (``renew``) and stops if one was taken over; even a job run twice
would write the same output block id (``Job.output_block_id``) with the same content.
"""

from __future__ import annotations

import json
import logging

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.errors import BackendError, ObjectNotFoundError

LEASE_NAME = "compactor.lease."

log = logging.getLogger(__name__)


def _generations(backend: Backend, tenant: str, block_id: str) -> list[int]:
    prefix = keys.block_key(tenant, block_id, LEASE_NAME)
    gens = []
    for info in backend.list(prefix):
        suffix = info.key[len(prefix) :]
        if suffix.isdigit():
            gens.append(int(suffix))
    return sorted(gens)


def _holder(backend: Backend, key: str) -> dict | None:
    try:
        doc = json.loads(backend.read(key))
        return doc if isinstance(doc, dict) else None
    except (ObjectNotFoundError, ValueError):
        return None


def acquire_block(
    backend: Backend, tenant: str, block_id: str, owner: str, duration: float, now: float
) -> str | None:
    """The key of our new lease on one block, or None when another live owner holds it."""
    gens = _generations(backend, tenant, block_id)
    generation = 0
    if gens:
        holder = _holder(backend, keys.block_key(tenant, block_id, f"{LEASE_NAME}{gens[-1]}"))
        if holder is not None and holder.get("owner") != owner and float(holder.get("expires_unix", 0)) > now:
            return None
        generation = gens[-1] + 1
    key = keys.block_key(tenant, block_id, f"{LEASE_NAME}{generation}")
    body = json.dumps({"owner": owner, "expires_unix": now + duration, "acquired_unix": now}).encode()
    return key if backend.write_if_absent(key, body) else None


def acquire(
    backend: Backend, tenant: str, block_ids: list[str], owner: str, duration: float, now: float
) -> list[str] | None:
    """Leases on every block (in sorted order, so contenders collide early), or None and no lease."""
    held: list[str] = []
    for block_id in sorted(block_ids):
        key = acquire_block(backend, tenant, block_id, owner, duration, now)
        if key is None:
            release(backend, held)
            return None
        held.append(key)
    return held


class LeaseLost(Exception):
    """Another compactor took over a lease we held (ours had expired): the job must stop."""


def renew(
    backend: Backend, tenant: str, held: list[str], owner: str, duration: float, now: float
) -> list[str]:
    """Fresh leases (the next generation, expiring ``now + duration``) for the blocks of ``held``.

    A long job renews before its leases expire; if another owner already holds a newer generation of
    any block, LeaseLost (the caller abandons the job; nothing of it is visible yet).
    """
    renewed: list[str] = []
    for key in held:
        block_id = key.split("/")[-2]
        new = acquire_block(backend, tenant, block_id, owner, duration, now)
        if new is None:
            release(backend, renewed)
            raise LeaseLost(f"lease on {tenant}/{block_id} was taken over")
        renewed.append(new)
    release(backend, held)
    return renewed


def release(backend: Backend, held: list[str]) -> None:
    """Delete the leases; one the store will not delete is left to expire (``lease_duration``), which
    only delays the next job on that block, so the job that held it does not fail for it."""
    for key in held:
        try:
            backend.delete(key)
        except ObjectNotFoundError:
            continue
        except BackendError as exc:
            log.warning("lease not released; it will expire", extra={"lease": key, "error": str(exc)})
