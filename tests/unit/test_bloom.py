"""Bloom filters on trace ids: hashing, false-positive rates, sharding and the on-disk format."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracelake.bloom import (
    HEADER_SIZE,
    MAGIC,
    BloomShard,
    ShardedBloom,
    hash_trace_id,
    hash_trace_ids,
    mix64,
    optimal_bits,
)
from tracelake.errors import BlockFormatError, InvalidInputError

trace_ids = st.binary(min_size=16, max_size=16)
id_lists = st.lists(trace_ids, max_size=300)


def random_ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16), dtype=np.uint8)


def zero_padded_ids(low: np.ndarray) -> np.ndarray:
    """64-bit ids widened to 16 bytes as OTLP does: high 8 bytes zero, big-endian low half."""
    ids = np.zeros((low.shape[0], 16), dtype=np.uint8)
    ids[:, 8:] = low.astype(">u8").view(np.uint8).reshape(-1, 8)
    return ids


def xray_ids(start: int, n: int, seed: int) -> np.ndarray:
    """AWS X-Ray style: a 4-byte big-endian epoch second (here ~100 ids a second), then 12 bytes."""
    ids = np.empty((n, 16), dtype=np.uint8)
    seconds = (start + np.arange(n) // 100).astype(">u4")
    ids[:, :4] = seconds.view(np.uint8).reshape(-1, 4)
    ids[:, 4:] = np.random.default_rng(seed).integers(0, 256, size=(n, 12), dtype=np.uint8)
    return ids


def as_bytes(ids: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in ids]


# --- hashing ---------------------------------------------------------------------------------


def splitmix64_outputs(seed: int, count: int) -> list[int]:
    """SplitMix64 as published (Vigna): our `mix64` must be its finalizer."""
    out, state = [], seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        out.append(mix64(state))
    return out


def test_mix64_is_the_splitmix64_finalizer() -> None:
    # The first outputs of SplitMix64 seeded with 0, from the reference implementation.
    assert splitmix64_outputs(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def reference_hash(trace_id: bytes) -> int:
    """The hash as the format documents it, written independently of the optimized code."""
    a = int.from_bytes(trace_id[:8], "little")
    b = int.from_bytes(trace_id[8:], "little")
    return mix64(mix64((a + 0x9E3779B97F4A7C15) % 2**64) ^ b)


# Pinned values: the hash is part of the on-disk format, so these must never change in version 1.
KNOWN_HASHES = [
    ("00000000000000000000000000000000", 0x48218226FF3CD4BF),
    ("000102030405060708090a0b0c0d0e0f", 0x45ECFE5342317E2A),
    ("5f0a1b2c00000000deadbeefcafebabe", 0x170B4CBD1AF22D78),
    ("00000000000000000000000000000001", 0xD559238FA2CB394B),
    ("ffffffffffffffffffffffffffffffff", 0x4650BC0EB3312E23),
]


@pytest.mark.parametrize(("hex_id", "expected"), KNOWN_HASHES)
def test_hash_is_pinned(hex_id: str, expected: int) -> None:
    trace_id = bytes.fromhex(hex_id)
    assert reference_hash(trace_id) == expected
    assert hash_trace_id(trace_id) == expected
    assert int(hash_trace_ids([trace_id])[0]) == expected


@settings(max_examples=50, deadline=None)
@given(id_lists)
def test_scalar_and_vectorized_hashes_agree(ids: list[bytes]) -> None:
    expected = [hash_trace_id(i) for i in ids]
    assert expected == [reference_hash(i) for i in ids]
    matrix = np.frombuffer(b"".join(ids), dtype=np.uint8).reshape(-1, 16)
    assert hash_trace_ids(matrix).tolist() == expected
    arrow = pa.array(ids, type=pa.binary(16))
    assert hash_trace_ids(arrow).tolist() == expected
    assert hash_trace_ids(ids).tolist() == expected
    half = len(ids) // 2
    chunked = pa.chunked_array([arrow[:half], arrow[half:]], type=pa.binary(16))
    assert hash_trace_ids(chunked).tolist() == expected


def test_hash_of_sliced_arrow_array_respects_offset() -> None:
    ids = as_bytes(random_ids(50, seed=1))
    arrow = pa.array(ids, type=pa.binary(16))
    assert hash_trace_ids(arrow.slice(7, 20)).tolist() == [hash_trace_id(i) for i in ids[7:27]]


def test_hash_of_non_contiguous_numpy_array() -> None:
    wide = random_ids(40, seed=2)
    strided = wide[::3]
    assert hash_trace_ids(strided).tolist() == [hash_trace_id(i) for i in as_bytes(strided)]


def test_hash_spreads_structured_ids() -> None:
    """Sequential zero-padded ids must not share hash bits (their raw bytes mostly do)."""
    hashes = hash_trace_ids(zero_padded_ids(np.arange(4096, dtype=np.uint64)))
    bits = (hashes[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    ones = bits.mean(axis=0)
    assert np.all(np.abs(ones - 0.5) < 0.05)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 15), dtype=np.uint8),
        np.zeros((3, 16), dtype=np.int64),
        pa.array([b"abc"], type=pa.binary(3)),
        pa.array([b"a" * 16, None], type=pa.binary(16)),
        [b"a" * 16, b"short"],
        "not ids",
    ],
)
def test_hash_rejects_malformed_id_batches(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        hash_trace_ids(bad)


@pytest.mark.parametrize("bad", [b"", b"x" * 15, b"x" * 17, "0" * 16])
def test_hash_rejects_malformed_single_id(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="16 bytes"):
        hash_trace_id(bad)  # type: ignore[arg-type]


# --- membership ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    id_lists,
    st.sampled_from([0.5, 0.1, 0.01, 0.001]),
    st.sampled_from([64, 256, 1024, 100 * 1024]),
)
def test_no_false_negatives(ids: list[bytes], false_positive: float, shard_size: int) -> None:
    bloom = ShardedBloom.build(ids, false_positive, shard_size_bytes=shard_size)
    assert all(bloom.may_contain(i) for i in ids)
    if ids:
        assert bloom.may_contain_many(ids).all()
    reread = ShardedBloom.from_bytes_list(bloom.to_bytes_list())
    assert all(reread.may_contain(i) for i in ids)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=200), st.sampled_from([0.2, 0.01]))
def test_shard_scalar_and_vectorized_checks_agree(hashes: list[int], false_positive: float) -> None:
    """The bit layout is one definition: built vectorized, checked scalar or vectorized alike."""
    shard = BloomShard.build(np.array(hashes[::2], dtype=np.uint64), false_positive)
    probe = np.array(hashes, dtype=np.uint64)
    assert shard.may_contain_hashes(probe).tolist() == [shard.may_contain_hash(h) for h in hashes]


def measured_fp(bloom: ShardedBloom, absent: np.ndarray) -> float:
    return float(bloom.may_contain_many(absent).mean())


@pytest.mark.parametrize("false_positive", [0.01, 0.05])
def test_false_positive_rate_random_ids(false_positive: float) -> None:
    bloom = ShardedBloom.build(random_ids(20_000, seed=3), false_positive)
    rate = measured_fp(bloom, random_ids(200_000, seed=4))
    assert false_positive / 1.5 < rate < false_positive * 1.5


@pytest.mark.parametrize("false_positive", [0.01, 0.05])
def test_false_positive_rate_scalar_checks(false_positive: float) -> None:
    bloom = ShardedBloom.build(random_ids(20_000, seed=5), false_positive, shard_size_bytes=4096)
    absent = as_bytes(random_ids(20_000, seed=6))
    rate = sum(bloom.may_contain(i) for i in absent) / len(absent)
    assert false_positive / 1.5 < rate < false_positive * 1.5


@pytest.mark.parametrize("false_positive", [0.01, 0.05])
def test_false_positive_rate_zero_padded_sequential_ids(false_positive: float) -> None:
    """Ids differing only in the low 8 bytes, high bytes zero, even consecutive numbers."""
    present = zero_padded_ids(np.arange(20_000, dtype=np.uint64))
    absent = zero_padded_ids(np.arange(20_000, 220_000, dtype=np.uint64))
    bloom = ShardedBloom.build(present, false_positive, shard_size_bytes=4096)
    assert bloom.may_contain_many(present).all()
    assert false_positive / 1.5 < measured_fp(bloom, absent) < false_positive * 1.5


@pytest.mark.parametrize("false_positive", [0.01, 0.05])
def test_false_positive_rate_zero_padded_random_ids(false_positive: float) -> None:
    rng = np.random.default_rng(7)
    low = rng.integers(0, 2**63, size=220_000, dtype=np.uint64)
    bloom = ShardedBloom.build(zero_padded_ids(low[:20_000]), false_positive)
    rate = measured_fp(bloom, zero_padded_ids(low[20_000:]))
    assert false_positive / 1.5 < rate < false_positive * 1.5


@pytest.mark.parametrize("false_positive", [0.01, 0.05])
def test_false_positive_rate_xray_ids(false_positive: float) -> None:
    present = xray_ids(1_700_000_000, 20_000, seed=8)
    absent = xray_ids(1_700_000_000, 200_000, seed=9)  # same seconds, different random part
    bloom = ShardedBloom.build(present, false_positive, shard_size_bytes=4096)
    assert bloom.may_contain_many(present).all()
    assert false_positive / 1.5 < measured_fp(bloom, absent) < false_positive * 1.5


def test_duplicates_are_counted_once() -> None:
    ids = random_ids(1000, seed=10)
    bloom = ShardedBloom.build(np.concatenate([ids, ids, ids]))
    assert bloom.n == 1000
    assert bloom == ShardedBloom.build(ids)


def test_empty_id_set_says_no_to_everything() -> None:
    bloom = ShardedBloom.build(np.empty((0, 16), dtype=np.uint8))
    assert len(bloom.shards) == 1
    assert bloom.n == 0
    probes = random_ids(1000, seed=11)
    assert not bloom.may_contain_many(probes).any()
    assert not any(bloom.may_contain(i) for i in as_bytes(probes))
    reread = ShardedBloom.from_bytes_list(bloom.to_bytes_list())
    assert reread == bloom
    assert not reread.may_contain(bytes(16))
    assert ShardedBloom.build(pa.array([], type=pa.binary(16))) == bloom
    assert not BloomShard.build(np.array([], dtype=np.uint64), 0.01).may_contain(bytes(16))


def test_arrow_and_numpy_inputs_build_the_same_bloom() -> None:
    ids = random_ids(5000, seed=12)
    arrow = pa.array(as_bytes(ids), type=pa.binary(16))
    assert ShardedBloom.build(ids, shard_size_bytes=2048) == ShardedBloom.build(
        pa.chunked_array([arrow[:1234], arrow[1234:]]), shard_size_bytes=2048
    )


def test_shard_sizing() -> None:
    hashes = hash_trace_ids(random_ids(10_000, seed=13))
    shard = BloomShard.build(hashes, 0.01)
    assert shard.k == 7
    assert shard.m == optimal_bits(10_000, 0.01)
    assert shard.m % 64 == 0
    assert abs(shard.m / 10_000 - (-math.log(0.01) / math.log(2) ** 2)) < 0.01
    assert shard.nbytes == shard.m // 8
    assert BloomShard.build(hashes[:1], 0.01).m == 64  # at least 64 bits


@pytest.mark.parametrize("false_positive", [0.0, 1.0, -0.1, 2.0])
def test_invalid_false_positive_rate(false_positive: float) -> None:
    with pytest.raises(ValueError, match="false_positive"):
        ShardedBloom.build(random_ids(10, seed=14), false_positive)


def test_shard_size_too_small() -> None:
    with pytest.raises(ValueError, match="shard_size_bytes"):
        ShardedBloom.build(random_ids(10, seed=15), shard_size_bytes=HEADER_SIZE + 4)


# --- sharding --------------------------------------------------------------------------------


def shard_groups(hashes: np.ndarray, count: int) -> list[np.ndarray]:
    distinct = np.unique(hashes)
    which = [ShardedBloom.shard_of(int(h), count) for h in distinct]
    return [distinct[np.array(which) == i] for i in range(count)]


@pytest.mark.parametrize(("n", "shard_size"), [(20_000, 4096), (3000, 512), (50, 64), (100, 10**6)])
def test_sharding_places_ids_where_shard_of_says(n: int, shard_size: int) -> None:
    ids = random_ids(n, seed=n)
    bloom = ShardedBloom.build(ids, 0.01, shard_size_bytes=shard_size)
    count = len(bloom.shards)
    groups = shard_groups(hash_trace_ids(ids), count)
    for shard, group in zip(bloom.shards, groups, strict=True):
        assert shard == BloomShard.build(group, 0.01)
    for h in hash_trace_ids(ids[:500]).tolist():
        assert bloom.shards[ShardedBloom.shard_of(h, count)].may_contain_hash(h)
    assert ShardedBloom.shard_of_many(hash_trace_ids(ids), count).tolist() == [
        ShardedBloom.shard_of(h, count) for h in hash_trace_ids(ids).tolist()
    ]


@pytest.mark.parametrize(("n", "shard_size"), [(20_000, 4096), (3000, 512), (50, 64), (9000, 10_000)])
def test_shards_stay_within_size_and_are_as_few_as_possible(n: int, shard_size: int) -> None:
    ids = random_ids(n, seed=n + 1)
    bloom = ShardedBloom.build(ids, 0.01, shard_size_bytes=shard_size)
    sizes = [len(b) for b in bloom.to_bytes_list()]
    assert max(sizes) <= shard_size
    capacity_bits = (shard_size - HEADER_SIZE) * 8 // 64 * 64
    hashes = hash_trace_ids(ids)
    for fewer in range(1, len(bloom.shards)):
        largest = max(len(g) for g in shard_groups(hashes, fewer))
        assert optimal_bits(largest, 0.01) > capacity_bits


def test_shard_of_uses_the_top_bits() -> None:
    assert ShardedBloom.shard_of(0, 7) == 0
    assert ShardedBloom.shard_of(2**64 - 1, 7) == 6
    assert ShardedBloom.shard_of((2**64 - 1) & ~(2**32 - 1), 1) == 0
    # Low 32 bits never move an id to another shard.
    assert ShardedBloom.shard_of(0x8000_0000_0000_0000, 2) == ShardedBloom.shard_of(0x8000_0000_FFFF_FFFF, 2)
    with pytest.raises(ValueError):
        ShardedBloom.shard_of(1, 0)


def test_shards_fill_evenly() -> None:
    bloom = ShardedBloom.build(random_ids(50_000, seed=16), 0.01, shard_size_bytes=8192)
    counts = [s.n for s in bloom.shards]
    assert len(counts) > 5
    assert max(counts) / min(counts) < 1.3


# --- serialization ---------------------------------------------------------------------------


def test_shard_round_trip_and_header_layout() -> None:
    shard = BloomShard.build(hash_trace_ids(random_ids(3000, seed=17)), 0.02)
    data = shard.to_bytes()
    assert len(data) == HEADER_SIZE + shard.nbytes == 28 + shard.m // 8
    magic, version, k, reserved, m, n, crc = struct.unpack_from("<4sBBHQQI", data)
    assert (magic, version, k, reserved, m, n) == (MAGIC, 1, shard.k, 0, shard.m, 3000)
    assert crc == zlib.crc32(data[HEADER_SIZE:])
    again = BloomShard.from_bytes(data)
    assert again == shard
    assert again.to_bytes() == data
    assert BloomShard.from_bytes(memoryview(data)) == shard
    assert BloomShard.from_bytes(bytearray(data)) == shard


def test_bit_layout_is_lsb_first() -> None:
    """Bit p is bit p % 8 of byte p // 8: a one-position filter shows it directly."""
    shard = BloomShard.build(np.array([12345], dtype=np.uint64), 0.5)
    assert shard.k == 1
    bits = np.unpackbits(np.frombuffer(shard.to_bytes()[HEADER_SIZE:], np.uint8), bitorder="little")
    (position,) = np.flatnonzero(bits)
    g = mix64(12345)
    assert position == (g & 0xFFFFFFFF) % shard.m


def test_sharded_round_trip() -> None:
    ids = random_ids(5000, seed=18)
    bloom = ShardedBloom.build(ids, 0.01, shard_size_bytes=1024)
    blobs = bloom.to_bytes_list()
    assert len(blobs) == len(bloom.shards) > 1
    again = ShardedBloom.from_bytes_list(blobs)
    assert again == bloom
    probes = random_ids(20_000, seed=19)
    assert (again.may_contain_many(probes) == bloom.may_contain_many(probes)).all()


def corrupt(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


GOOD = BloomShard.build(hash_trace_ids(random_ids(200, seed=20)), 0.01).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (GOOD[:10], "truncated"),
        (GOOD[:-1], "truncated"),
        (GOOD[: HEADER_SIZE + 3], "truncated"),
        (GOOD + b"\0", "trailing"),
        (corrupt(GOOD, 0, b"XXXX"), "magic"),
        (corrupt(GOOD, 4, b"\x02"), "version 2"),
        (corrupt(GOOD, 5, b"\x00"), "k=0"),
        (corrupt(GOOD, 6, b"\x01\x00"), "reserved"),
        (corrupt(GOOD, 8, struct.pack("<Q", 100)), "m=100"),
        (corrupt(GOOD, 8, struct.pack("<Q", 0)), "m=0"),
        (corrupt(GOOD, 8, struct.pack("<Q", 2**40)), "m="),
        (
            corrupt(GOOD, HEADER_SIZE + 5, bytes([GOOD[HEADER_SIZE + 5] ^ 0x10])),
            "CRC32",
        ),
        (corrupt(GOOD, 24, b"\0\0\0\0"), "corrupt"),
    ],
)
def test_corrupt_shard_bytes_raise_block_format_error(data: bytes, message: str) -> None:
    with pytest.raises(BlockFormatError, match=message):
        BloomShard.from_bytes(data)


def test_corrupt_shard_in_list_names_the_shard() -> None:
    blobs = ShardedBloom.build(random_ids(3000, seed=21), shard_size_bytes=1024).to_bytes_list()
    blobs[2] = blobs[2][:-5]
    with pytest.raises(BlockFormatError, match=r"bloom-2: .*truncated"):
        ShardedBloom.from_bytes_list(blobs)
    with pytest.raises(BlockFormatError, match="at least one shard"):
        ShardedBloom.from_bytes_list([])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        BloomShard.from_bytes(MAGIC + b"\x01" + data)
    except BlockFormatError as e:
        assert str(e)
