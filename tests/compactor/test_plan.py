"""Planning is a pure function of the block list: grouping, limits, order, and the waiting rule."""

from __future__ import annotations

from tracelake.block.meta import FORMAT_V1, BlockMeta, RowGroupRange
from tracelake.compaction.plan import ROW_GROUP_METADATA_BYTES, max_input_row_groups, plan
from tracelake.config import CompactionConfig

NS = 1_000_000_000
NOW = 100 * 3600.0  # window 100 is the current one (1 h windows)


def meta(
    block_id: str,
    *,
    hour: float = 10,
    size: int = 100,
    level: int = 0,
    tenant: str = "t",
    traces: int = 10,
    fmt: str = FORMAT_V1,
    groups: int = 0,
) -> BlockMeta:
    end = int(hour * 3600 * NS)
    return BlockMeta(
        format=fmt,
        block_id=block_id,
        tenant_id=tenant,
        start_unix_nano=end - NS,
        end_unix_nano=end,
        min_id="0" * 32,
        max_id="f" * 32,
        total_traces=traces,
        total_spans=traces * 10,
        size=size,
        compaction_level=level,
        row_groups=[RowGroupRange("0" * 32, "f" * 32, i, 1) for i in range(groups)],
    )


def ids(jobs) -> list[list[str]]:
    return [j.input_ids for j in jobs]


def test_groups_by_tenant_and_window() -> None:
    blocks = [
        meta("a1", hour=10.2),
        meta("a2", hour=10.7),
        meta("a3", hour=10.5, level=2),  # an older window merges across levels
        meta("b1", hour=11.5),  # another window: alone, not merged
        meta("d1", hour=10.3, tenant="u"),  # another tenant
        meta("d2", hour=10.4, tenant="u"),
    ]
    jobs = plan(blocks, CompactionConfig(), NOW)
    assert sorted(ids(jobs)) == [["a1", "a2", "a3"], ["d1", "d2"]]
    assert {(j.tenant, j.level, j.window) for j in jobs} == {("t", 2, 10), ("u", 0, 10)}


def test_the_current_window_is_grouped_by_level() -> None:
    blocks = [meta(f"l0-{i}", hour=100.5) for i in range(3)] + [
        meta(f"l1-{i}", hour=100.5, level=1) for i in range(3)
    ]
    jobs = plan(blocks, CompactionConfig(max_input_blocks=3), NOW)
    assert ids(jobs) == [["l0-0", "l0-1", "l0-2"], ["l1-0", "l1-1", "l1-2"]]
    assert [j.level for j in jobs] == [0, 1]


def test_other_format_versions_are_never_merged() -> None:
    jobs = plan([meta("a", fmt="tl1"), meta("b", fmt="tl2"), meta("c", fmt="tl2")], CompactionConfig(), NOW)
    assert ids(jobs) == [["b", "c"]]


def test_smallest_first_and_at_most_max_input_blocks() -> None:
    blocks = [meta(f"b{i:02}", size=1000 - i) for i in range(7)]  # b06 is the smallest
    jobs = plan(blocks, CompactionConfig(max_input_blocks=3), NOW)
    assert ids(jobs) == [["b04", "b05", "b06"], ["b01", "b02", "b03"]]  # b00 (largest) alone: left
    assert all(2 <= len(j.inputs) <= 3 for j in jobs)


def test_output_bounded_by_bytes_and_traces() -> None:
    blocks = [meta(f"b{i}", size=40, traces=5) for i in range(6)]
    by_bytes = plan(blocks, CompactionConfig(max_block_bytes=100), NOW)
    assert [len(j.inputs) for j in by_bytes] == [2, 2, 2]
    assert all(j.bytes <= 100 for j in by_bytes)
    by_traces = plan(blocks, CompactionConfig(max_compaction_objects=15), NOW)
    assert [len(j.inputs) for j in by_traces] == [3, 3]


def test_a_block_as_large_as_an_output_is_left_alone() -> None:
    jobs = plan(
        [meta("big", size=500), meta("x", size=10), meta("y", size=10)],
        CompactionConfig(max_block_bytes=100),
        NOW,
    )
    assert ids(jobs) == [["x", "y"]]


def test_the_current_window_waits_for_full_jobs() -> None:
    current = [meta(f"n{i}", hour=100.5) for i in range(3)]
    assert plan(current, CompactionConfig(max_input_blocks=4), NOW) == []
    current.append(meta("n3", hour=100.6))
    assert ids(plan(current, CompactionConfig(max_input_blocks=4), NOW)) == [["n0", "n1", "n2", "n3"]]


def test_no_block_in_two_jobs_and_ids_are_deterministic() -> None:
    blocks = [meta(f"b{i:02}", size=i + 1, hour=10 + (i % 3) * 0.3) for i in range(25)]
    jobs = plan(blocks, CompactionConfig(max_input_blocks=4), NOW)
    used = [b for j in jobs for b in j.input_ids]
    assert len(used) == len(set(used)) == 24  # 25 blocks: one left over
    again = plan(list(reversed(blocks)), CompactionConfig(max_input_blocks=4), NOW)
    assert [j.output_block_id for j in jobs] == [j.output_block_id for j in again]
    assert len({j.output_block_id for j in jobs}) == len(jobs)


def test_oldest_window_first() -> None:
    blocks = [meta("late1", hour=20), meta("late2", hour=20), meta("early1", hour=5), meta("early2", hour=5)]
    assert ids(plan(blocks, CompactionConfig(), NOW)) == [["early1", "early2"], ["late1", "late2"]]


def test_a_jobs_row_groups_stay_within_half_the_memory_budget() -> None:
    """Parquet metadata (each input's footer, the output writer's) grows with row groups, outside the
    rows the budget sizes: a job takes no more row groups than half the budget can hold."""
    cfg = CompactionConfig(memory_budget_bytes=8 * 2 * ROW_GROUP_METADATA_BYTES)  # 8 row groups
    assert max_input_row_groups(cfg) == 8
    blocks = [meta(f"b{i}", size=100 + i, groups=3) for i in range(5)] + [meta("big", size=999, groups=9)]
    jobs = plan(blocks, cfg, NOW)
    assert ids(jobs) == [["b0", "b1"], ["b2", "b3"]]  # 6 row groups each; "big" alone exceeds 8
    assert all(sum(len(m.row_groups) for m in j.inputs) <= 8 for j in jobs)
    assert max_input_row_groups(CompactionConfig()) * 4000 > 1_000_000  # default: ~1.7M spans a job


def test_in_the_current_window_a_job_the_limits_fill_does_not_wait_for_more_inputs() -> None:
    """Ten inputs make a full job in the window still receiving blocks; when the row-group bound
    stops a run first, it is as full as it can get (else large level-1 blocks would wait for the
    window to close). A few small blocks cut off by one large block still wait."""
    cfg = CompactionConfig(memory_budget_bytes=20 * 2 * ROW_GROUP_METADATA_BYTES)  # 20 row groups
    big_inputs = [meta(f"l1-{i}", hour=100.5, level=1, size=100 + i, groups=5) for i in range(6)]
    jobs = plan(big_inputs, cfg, NOW)
    assert ids(jobs) == [["l1-0", "l1-1", "l1-2", "l1-3"]]  # 20 row groups: full at 4 inputs
    small = [meta(f"s{i}", hour=100.5, size=10 + i, groups=1) for i in range(3)]
    assert plan([*small, meta("large", hour=100.5, size=99, groups=19)], cfg, NOW) == []
