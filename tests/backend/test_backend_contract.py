"""One contract, every backend: the same tests run on the local directory and on S3 (moto).

Whatever code above the backend relies on (clipping of byte ranges, sorted recursive listings,
folders that vanish with their last object, create-if-absent) is pinned here, so a new backend is
correct when this file passes against it.
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracelake.backend import (
    Backend,
    ObjectInfo,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
    open_backend,
)
from tracelake.backend.base import RESERVED_TOP_LEVEL
from tracelake.backend.local import LocalBackend
from tracelake.config import LocalStorageConfig, TraceStorageConfig
from tracelake.errors import BackendError, ConfigError, ObjectNotFoundError

DATA = bytes(range(100))
MiB = 1024 * 1024


# -- whole objects -------------------------------------------------------------------------------


def test_write_read_exists_size(backend: Backend) -> None:
    key = "single-tenant/0b1c/meta.json"
    assert not backend.exists(key)
    backend.write(key, DATA)
    assert backend.exists(key)
    assert backend.read(key) == DATA
    assert backend.size(key) == len(DATA)
    backend.write(key, b"replaced")
    assert backend.read(key) == b"replaced"
    assert backend.size(key) == 8


def test_empty_object(backend: Backend) -> None:
    backend.write("t/empty", b"")
    assert backend.exists("t/empty")
    assert backend.read("t/empty") == b""
    assert backend.size("t/empty") == 0


def test_write_accepts_bytes_like(backend: Backend) -> None:
    backend.write("t/ba", bytearray(b"abc"))
    backend.write("t/mv", memoryview(b"xyz"))
    assert backend.read("t/ba") == b"abc"
    assert backend.read("t/mv") == b"xyz"


def test_keys_with_spaces_and_unicode(backend: Backend) -> None:
    key = "tenant one/blöck+id=1/meta json ü.json"
    backend.write(key, b"u")
    assert backend.read(key) == b"u"
    assert [o.key for o in backend.list("tenant one/")] == [key]
    assert backend.list_dirs("tenant one") == ["blöck+id=1"]


def test_folder_is_not_an_object(backend: Backend) -> None:
    backend.write("t/b/meta.json", b"m")
    assert not backend.exists("t/b")
    with pytest.raises(ObjectNotFoundError):
        backend.read("t/b")
    with pytest.raises(ObjectNotFoundError):
        backend.size("t")


# -- ranged reads --------------------------------------------------------------------------------

RANGES = [
    (RangeByteRequest(10, 20), DATA[10:20]),
    (RangeByteRequest(0, 1), DATA[:1]),
    (RangeByteRequest(0, 100), DATA),
    (RangeByteRequest(5, 5), b""),  # empty range
    (RangeByteRequest(20, 10), b""),  # end before start
    (RangeByteRequest(90, 200), DATA[90:]),  # runs past EOF: clipped
    (RangeByteRequest(100, 110), b""),  # starts at EOF
    (RangeByteRequest(150, 200), b""),  # starts past EOF
    (OffsetByteRequest(0), DATA),
    (OffsetByteRequest(50), DATA[50:]),
    (OffsetByteRequest(99), DATA[99:]),
    (OffsetByteRequest(100), b""),
    (OffsetByteRequest(1000), b""),
    (SuffixByteRequest(10), DATA[-10:]),
    (SuffixByteRequest(100), DATA),
    (SuffixByteRequest(1000), DATA),  # longer than the object: all of it
    (SuffixByteRequest(0), b""),
]


@pytest.mark.parametrize(("request_", "expected"), RANGES, ids=repr)
def test_ranged_read(backend: Backend, request_: object, expected: bytes) -> None:
    backend.write("r/obj", DATA)
    assert backend.read("r/obj", request_) == expected  # type: ignore[arg-type]


def test_ranged_reads_of_empty_object(backend: Backend) -> None:
    backend.write("r/empty", b"")
    for request_ in (
        RangeByteRequest(0, 10),
        RangeByteRequest(0, 0),
        OffsetByteRequest(0),
        SuffixByteRequest(5),
        SuffixByteRequest(0),
    ):
        assert backend.read("r/empty", request_) == b"", request_


def test_ranged_read_of_missing_object(backend: Backend) -> None:
    for request_ in (
        RangeByteRequest(0, 10),
        RangeByteRequest(3, 3),
        OffsetByteRequest(5),
        SuffixByteRequest(8),
        SuffixByteRequest(0),
    ):
        with pytest.raises(ObjectNotFoundError):
            backend.read("r/missing", request_)


def test_negative_byte_requests_are_refused() -> None:
    with pytest.raises(ValueError):
        RangeByteRequest(-1, 5)
    with pytest.raises(ValueError):
        OffsetByteRequest(-1)
    with pytest.raises(ValueError):
        SuffixByteRequest(-3)


# -- listings ------------------------------------------------------------------------------------

KEYS = [
    "a-file",
    "t1.txt",
    "t1/b1/data.parquet",
    "t1/b1/meta.json",
    "t1/b10/meta.json",
    "t1/b2/meta.json",
    "t1/index.json.gz",
    "t2/b3/x",
]


@pytest.fixture
def populated(backend: Backend) -> Backend:
    for i, key in enumerate(reversed(KEYS)):
        backend.write(key, b"x" * (i + 1))
    return backend


def test_list_everything_sorted_and_recursive(populated: Backend) -> None:
    before = time.time()
    listed = list(populated.list())
    assert [o.key for o in listed] == sorted(KEYS)
    sizes = {key: i + 1 for i, key in enumerate(reversed(KEYS))}
    for info in listed:
        assert isinstance(info, ObjectInfo)
        assert info.size == sizes[info.key]
        # written moments ago (S3 keeps whole seconds; allow clock skew with the server)
        assert abs(info.last_modified - before) < 120


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", sorted(KEYS)),
        ("t1/", [k for k in sorted(KEYS) if k.startswith("t1/")]),
        ("t1", [k for k in sorted(KEYS) if k.startswith("t1")]),  # a string prefix, not a folder
        ("t1/b1", ["t1/b1/data.parquet", "t1/b1/meta.json", "t1/b10/meta.json"]),
        ("t1/b1/", ["t1/b1/data.parquet", "t1/b1/meta.json"]),
        ("t1/b1/meta.json", ["t1/b1/meta.json"]),
        ("t2/b3/x", ["t2/b3/x"]),
        ("nope/", []),
        ("nope", []),
        ("t1/b1/meta.json/", []),
    ],
)
def test_list_with_prefix(populated: Backend, prefix: str, expected: list[str]) -> None:
    assert [o.key for o in populated.list(prefix)] == expected


def test_list_is_lazy_iterator(populated: Backend) -> None:
    it = populated.list("t1/")
    assert next(iter(it)).key == "t1/b1/data.parquet"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ["t1", "t2"]),
        ("t1/", ["b1", "b10", "b2"]),
        ("t1", ["b1", "b10", "b2"]),  # a list_dirs prefix is always a folder
        ("t1/b1/", []),
        ("t2", ["b3"]),
        ("nope/", []),
        ("a-file", []),
    ],
)
def test_list_dirs(populated: Backend, prefix: str, expected: list[str]) -> None:
    assert populated.list_dirs(prefix) == expected


def test_folders_vanish_with_their_last_object(populated: Backend) -> None:
    populated.delete("t2/b3/x")
    assert populated.list_dirs() == ["t1"]
    populated.delete_prefix("t1/b2/")
    assert populated.list_dirs("t1/") == ["b1", "b10"]


def test_bad_prefixes_are_refused(backend: Backend) -> None:
    for prefix in ("/abs", "../x", "a/../b", "a//b"):
        with pytest.raises(ValueError):
            list(backend.list(prefix))
        with pytest.raises(ValueError):
            backend.list_dirs(prefix)
        with pytest.raises(ValueError):
            backend.delete_prefix(prefix)


# -- deletes -------------------------------------------------------------------------------------


def test_delete(populated: Backend) -> None:
    populated.delete("t1/b1/meta.json")
    assert not populated.exists("t1/b1/meta.json")
    assert populated.exists("t1/b1/data.parquet")
    populated.delete("t1/b1/meta.json")  # absent: no error
    populated.delete("never/was/here")


def test_delete_prefix(populated: Backend) -> None:
    assert populated.delete_prefix("t1/b1/") == 2
    assert populated.exists("t1/b10/meta.json")
    assert populated.delete_prefix("t1/b1/") == 0
    # a string prefix, like list(): "t1" also takes t1.txt
    assert populated.delete_prefix("t1") == 4
    assert [o.key for o in populated.list()] == ["a-file", "t2/b3/x"]
    assert populated.delete_prefix("") == 2
    assert list(populated.list()) == []
    assert populated.list_dirs() == []


def test_delete_prefix_many(backend: Backend) -> None:
    for i in range(30):
        backend.write(f"many/{i:03d}", b"")
    assert backend.delete_prefix("many/") == 30
    assert list(backend.list("many/")) == []


# -- create-if-absent ----------------------------------------------------------------------------


def test_write_if_absent(backend: Backend) -> None:
    assert backend.write_if_absent("leases/compactor", b"owner-a") is True
    assert backend.write_if_absent("leases/compactor", b"owner-b") is False
    assert backend.read("leases/compactor") == b"owner-a"
    backend.delete("leases/compactor")
    assert backend.write_if_absent("leases/compactor", b"owner-b") is True
    assert backend.read("leases/compactor") == b"owner-b"


def test_write_if_absent_has_one_winner(backend: Backend) -> None:
    results: dict[int, bool] = {}
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        results[i] = backend.write_if_absent("leases/race", f"owner-{i}".encode())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    assert backend.read("leases/race") == f"owner-{winners[0]}".encode()


# -- large objects -------------------------------------------------------------------------------


def test_write_file_multipart(
    backend: Backend,
    storage_config: TraceStorageConfig,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    source = tmp_path / "big.bin"
    payload = os.urandom(11 * MiB + 123)  # 3 parts of 5 MiB in the test config
    source.write_bytes(payload)
    backend.write_file("t/blk/data.parquet", source)
    assert backend.size("t/blk/data.parquet") == len(payload)
    assert (
        backend.read("t/blk/data.parquet", RangeByteRequest(5 * MiB - 10, 5 * MiB + 10))
        == (payload[5 * MiB - 10 : 5 * MiB + 10])
    )
    assert backend.read("t/blk/data.parquet", SuffixByteRequest(123)) == payload[-123:]
    assert backend.read("t/blk/data.parquet") == payload
    if storage_config.backend == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        client = endpoint.client()
        head = client.head_object(Bucket=endpoint.bucket, Key=storage_config.s3.prefix + "t/blk/data.parquet")
        client.close()
        assert head["ETag"].strip('"').endswith("-3"), "expected a 3-part multipart upload"


def test_write_file_small_and_str_path(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(DATA)
    backend.write_file("t/small", str(source))
    assert backend.read("t/small") == DATA


def test_write_file_missing_source(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        backend.write_file("t/x", tmp_path / "no-such-file")
    assert not backend.exists("t/x")


# -- pyarrow -------------------------------------------------------------------------------------


def test_open_input_file_reads_parquet(backend: Backend) -> None:
    table = pa.table(
        {
            "trace_id": pa.array([bytes([i]) * 16 for i in range(200)], pa.binary(16)),
            "name": [f"span-{i}" for i in range(200)],
            "duration": list(range(200)),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=50, compression="zstd")
    backend.write("single-tenant/blk/data.parquet", sink.getvalue())
    with backend.open_input_file("single-tenant/blk/data.parquet") as f:
        assert f.size() == len(sink.getvalue())
        parquet = pq.ParquetFile(f)
        assert parquet.metadata.num_row_groups == 4
        assert parquet.read_row_group(2).column("duration").to_pylist() == list(range(100, 150))
    with backend.open_input_file("single-tenant/blk/data.parquet") as f:
        assert pq.read_table(f).equals(table)


def test_open_input_file_random_access(backend: Backend) -> None:
    backend.write("t/raw", DATA)
    with backend.open_input_file("t/raw") as f:
        assert f.read_at(5, 10) == DATA[10:15]
        f.seek(95)
        assert f.read() == DATA[95:]


def test_open_scan_file_reads_the_object_and_leaves_no_temporary_file(
    backend: Backend, tmp_path: Path
) -> None:
    """The compactor's reader: same bytes as ``read``, random access, nothing left on disk."""
    import tempfile

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    default_dir = tempfile.tempdir
    tempfile.tempdir = str(spool_dir)
    try:
        backend.write("t/raw", DATA * 1000)
        with backend.open_scan_file("t/raw") as f:
            assert list(spool_dir.iterdir()) == []  # unlinked at once, readable while open
            assert f.size() == len(DATA) * 1000
            assert f.read_at(5, 10) == (DATA * 1000)[10:15]
            f.seek(0)
            assert f.read() == DATA * 1000
        with pytest.raises(ObjectNotFoundError, match=r"nope/data\.parquet"):
            backend.open_scan_file("t/nope/data.parquet")
        assert list(spool_dir.iterdir()) == []
    finally:
        tempfile.tempdir = default_dir


# -- missing objects and bad keys ----------------------------------------------------------------


def test_missing_object(backend: Backend) -> None:
    key = "single-tenant/nope/meta.json"
    assert not backend.exists(key)
    with pytest.raises(ObjectNotFoundError, match=r"nope/meta\.json"):
        backend.read(key)
    with pytest.raises(ObjectNotFoundError, match=r"nope/meta\.json"):
        backend.size(key)
    with pytest.raises(ObjectNotFoundError, match=r"nope/meta\.json"):
        backend.open_input_file(key)
    with pytest.raises(ObjectNotFoundError) as caught:
        backend.read(key)
    assert backend.description in str(caught.value)


BAD_KEYS = ["", "/abs/key", "a/../b", "..", "../x", "a/..", "a//b", "a/", ".", "./a", "a/./b"]
BAD_KEYS.append(f"{RESERVED_TOP_LEVEL}/x")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(backend: Backend, key: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    calls = [
        lambda: backend.read(key),
        lambda: backend.write(key, b"x"),
        lambda: backend.write_file(key, source),
        lambda: backend.write_if_absent(key, b"x"),
        lambda: backend.exists(key),
        lambda: backend.size(key),
        lambda: backend.delete(key),
        lambda: backend.open_input_file(key),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert list(backend.list()) == []


def test_description_names_the_store(backend: Backend, storage_config: TraceStorageConfig) -> None:
    if storage_config.backend == "local":
        assert backend.description == f"local directory {Path(storage_config.local.path).resolve()}"
    else:
        s3 = storage_config.s3
        assert backend.description.startswith(f"s3://{s3.bucket}/{s3.prefix.rstrip('/')} at ")
        assert s3.endpoint in backend.description


def test_context_manager_closes(storage_config: TraceStorageConfig) -> None:
    with open_backend(storage_config) as store:
        store.write("t/x", b"1")
        assert store.read("t/x") == b"1"
        store.delete_prefix("")


# -- local specifics -----------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "store")


def test_open_backend_creates_local_directory(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "data"
    cfg = TraceStorageConfig(backend="local", local=LocalStorageConfig(path=str(root)))
    store = open_backend(cfg)
    assert root.is_dir()
    assert isinstance(store, LocalBackend)
    assert list(store.list()) == []
    assert store.list_dirs() == []  # the temp folder is never shown


def test_open_backend_s3_needs_bucket() -> None:
    with pytest.raises(ConfigError, match="bucket"):
        open_backend(TraceStorageConfig(backend="s3"))


def test_local_failed_write_leaves_nothing(local: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    local.write("t/keep", b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(BackendError, match="Input/output error"):
        local.write("t/new", b"new")
    with pytest.raises(BackendError):
        local.write("t/keep", b"new")
    with pytest.raises(BackendError):
        local.write_if_absent("t/lease", b"new")
    monkeypatch.undo()
    assert not local.exists("t/new")
    assert not local.exists("t/lease")
    assert local.read("t/keep") == b"old"
    assert [o.key for o in local.list()] == ["t/keep"]
    assert os.listdir(local.root / RESERVED_TOP_LEVEL) == []


def test_local_failed_copy_leaves_nothing(
    local: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 3 * MiB)

    def broken_copy(src: object, dst: object, length: int = 0) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shutil.copyfileobj", broken_copy)
    with pytest.raises(BackendError, match="No space left"):
        local.write_file("t/big", source)
    monkeypatch.undo()
    assert not local.exists("t/big")
    assert list(local.list()) == []
    assert os.listdir(local.root / RESERVED_TOP_LEVEL) == []


def test_local_temp_files_are_never_listed(local: LocalBackend) -> None:
    (local.root / RESERVED_TOP_LEVEL / "half-written.tmp").write_bytes(b"partial")
    local.write("t/x", b"1")
    assert [o.key for o in local.list()] == ["t/x"]
    assert local.list_dirs() == ["t"]
    assert local.delete_prefix("") == 1
    assert (local.root / RESERVED_TOP_LEVEL / "half-written.tmp").exists()


def test_local_stale_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalBackend(root)
    stale = root / RESERVED_TOP_LEVEL / "old.tmp"
    fresh = root / RESERVED_TOP_LEVEL / "new.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    LocalBackend(root)
    assert not stale.exists()
    assert fresh.exists()


def test_local_empty_folders_are_pruned_and_ignored(local: LocalBackend) -> None:
    local.write("t1/b1/meta.json", b"m")
    local.delete("t1/b1/meta.json")
    assert not (local.root / "t1").exists()  # pruned up to the root
    (local.root / "t9" / "empty").mkdir(parents=True)  # e.g. left by another tool
    assert local.list_dirs() == []
    assert local.list_dirs("t9") == []


def test_local_replaced_object_keeps_open_readers_consistent(local: LocalBackend) -> None:
    local.write("t/obj", b"A" * 1000)
    with local.open_input_file("t/obj") as f:
        local.write("t/obj", b"B" * 10)
        assert f.read_at(1000, 0) == b"A" * 1000
    assert local.read("t/obj") == b"B" * 10


def test_local_open_input_file_of_empty_object(local: LocalBackend) -> None:
    local.write("t/empty", b"")
    with local.open_input_file("t/empty") as f:
        assert f.size() == 0


def test_local_key_and_folder_cannot_share_a_name(local: LocalBackend) -> None:
    local.write("t/a", b"object")
    with pytest.raises(BackendError, match="cannot write"):
        local.write("t/a/b", b"x")
    with pytest.raises(BackendError, match="cannot write"):
        local.write_if_absent("t/a/b", b"x")
    local.write("t/dir/x", b"x")
    with pytest.raises(BackendError, match="cannot write"):
        local.write("t/dir", b"x")
    with pytest.raises(BackendError, match="cannot write"):
        local.write_if_absent("t/dir", b"x")
    assert [o.key for o in local.list()] == ["t/a", "t/dir/x"]
    assert os.listdir(local.root / RESERVED_TOP_LEVEL) == []
