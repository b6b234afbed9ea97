"""The local-directory backend: the embedded default, and what single-process mode runs on.

Writes go to a temp file under ``<root>/.tracelake-tmp/``, are fsynced, then renamed into place, so a
crash or a concurrent reader never sees half an object. Empty folders left by deletes are removed,
and ``list_dirs`` ignores any that remain, so folders behave as on S3 (they exist only while they
hold an object). Unlike S3, a key cannot also be a folder here ("a" and "a/b" cannot both exist);
tracelake's layout never needs that.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from tracelake.backend.base import (
    RESERVED_TOP_LEVEL,
    Backend,
    ByteRequest,
    ObjectInfo,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
    folder_prefix,
    validate_key,
    validate_prefix,
)
from tracelake.errors import BackendError, ObjectNotFoundError

# Temp files older than this at start-up are leftovers of a crashed write and are removed.
STALE_TEMP_SECONDS = 3600.0
_COPY_CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on directories
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """Objects are files under ``root``; a key's "/" separators are directories."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.description = f"local directory {self.root}"
        self._tmp = self.root / RESERVED_TOP_LEVEL
        try:
            if create:
                self._tmp.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                raise BackendError(f"{self.description} does not exist")
        except OSError as exc:
            raise BackendError(f"cannot create {self.description}: {exc.strerror or exc}") from exc
        self._remove_stale_temp_files()

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _error(self, action: str, key: str, exc: OSError) -> BackendError:
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return ObjectNotFoundError(f"object {key} not found in {self.description}")
        return BackendError(f"cannot {action} {key} in {self.description}: {exc.strerror or exc}")

    def _remove_stale_temp_files(self) -> None:
        try:
            entries = list(os.scandir(self._tmp))
        except OSError:
            return
        cutoff = time.time() - STALE_TEMP_SECONDS
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass

    def _new_temp(self) -> tuple[Path, BinaryIO]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        path = self._tmp / f"{uuid.uuid4().hex}.tmp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        return path, os.fdopen(fd, "wb")

    def _write_temp(self, fill: Callable[[BinaryIO], object]) -> Path:
        """A fully written, fsynced temp file; removed again if anything fails."""
        tmp, fh = self._new_temp()
        try:
            with fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _publish(self, tmp: Path, target: Path, place: Callable[[Path, Path], object]) -> None:
        """Move a finished temp file to ``target``, creating folders.

        A concurrent delete may prune the parent folder between our mkdir and the rename, so a
        missing parent is retried a few times.
        """
        for attempt in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError as exc:
                # An object sits where a folder must be ("a" exists, writing "a/b"); not "taken".
                raise NotADirectoryError(
                    errno.ENOTDIR, "an object has the name of a folder of this key"
                ) from exc
            try:
                place(tmp, target)
                break
            except FileNotFoundError:
                if attempt == 4 or not tmp.exists():
                    raise
        _fsync_dir(target.parent)

    def _prune_empty_dirs(self, start: Path) -> None:
        """Remove now-empty folders from ``start`` up to (not including) the root."""
        current = start
        while current != self.root and self.root in current.parents:
            try:
                current.rmdir()
            except OSError:
                return
            current = current.parent

    # -- writes --------------------------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        target = self._path(key)
        try:
            tmp = self._write_temp(lambda fh: fh.write(data))
            try:
                self._publish(tmp, target, os.replace)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BackendError(f"cannot write {key} in {self.description}: {exc.strerror or exc}") from exc

    def write_file(self, key: str, path: str | Path) -> None:
        target = self._path(key)
        source = Path(path)
        try:
            with source.open("rb") as src:
                tmp = self._write_temp(lambda fh: shutil.copyfileobj(src, fh, _COPY_CHUNK))
        except FileNotFoundError as exc:
            raise BackendError(f"cannot upload {source} to {key}: the file does not exist") from exc
        except OSError as exc:
            raise BackendError(
                f"cannot write {key} in {self.description} from {source}: {exc.strerror or exc}"
            ) from exc
        try:
            self._publish(tmp, target, os.replace)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"cannot write {key} in {self.description}: {exc.strerror or exc}") from exc

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Hard-link a complete temp file into place: link() fails if the target exists, atomically."""
        target = self._path(key)
        try:
            tmp = self._write_temp(lambda fh: fh.write(data))
        except OSError as exc:
            raise BackendError(f"cannot write {key} in {self.description}: {exc.strerror or exc}") from exc
        try:
            self._publish(tmp, target, os.link)
            return True
        except OSError as exc:
            if exc.errno == errno.EEXIST and not target.is_dir():
                return False
            raise BackendError(f"cannot write {key} in {self.description}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    # -- reads ---------------------------------------------------------------------------------

    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes:
        path = self._path(key)
        try:
            with path.open("rb") as fh:
                match byte_range:
                    case None:
                        return fh.read()
                    case RangeByteRequest(start=start, end=end):
                        if end <= start:
                            return b""
                        fh.seek(start)
                        return fh.read(end - start)
                    case OffsetByteRequest(offset=offset):
                        fh.seek(offset)
                        return fh.read()
                    case SuffixByteRequest(suffix=suffix):
                        if suffix == 0:
                            return b""
                        size = os.fstat(fh.fileno()).st_size
                        fh.seek(max(0, size - suffix))
                        return fh.read()
                raise TypeError(f"unknown byte request {byte_range!r}")
        except IsADirectoryError as exc:
            raise ObjectNotFoundError(f"object {key} not found in {self.description}") from exc
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(f"object {key} not found in {self.description}")
        return st.st_size

    def _open_file(self, key: str, open_: Callable[[str, str], pa.NativeFile]) -> pa.NativeFile:
        path = self._path(key)
        if path.is_dir():
            raise ObjectNotFoundError(f"object {key} not found in {self.description}")
        try:
            return open_(str(path), "r")
        except OSError as exc:
            raise self._error("open", key, exc) from exc

    def open_input_file(self, key: str) -> pa.NativeFile:
        # A memory map keeps reading the old file if the object is replaced meanwhile (the rename
        # leaves the mapped inode intact), so readers never see a mix of versions.
        return self._open_file(key, pa.memory_map)

    def open_scan_file(self, key: str) -> pa.NativeFile:
        # Reads into Arrow buffers: a memory map's file pages count in the process's RSS while
        # mapped. An open file keeps reading the old inode if the object is replaced, as a memory
        # map does.
        return self._open_file(key, pa.OSFile)

    # -- listings ------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        folder, _, name_start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        key_base = folder + "/" if folder else ""
        return self._walk(base, key_base, name_start, top=not folder)

    def _walk(self, directory: Path, key_base: str, name_start: str, top: bool) -> Iterator[ObjectInfo]:
        """Yield files in key order: a folder sorts as "name/", which is where its keys sort."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise BackendError(
                f"cannot list {key_base or '/'} in {self.description}: {exc.strerror or exc}"
            ) from exc
        keyed: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if not entry.name.startswith(name_start):
                continue
            if top and entry.name == RESERVED_TOP_LEVEL:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            keyed.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        keyed.sort(key=lambda item: item[0])
        for sort_name, entry, is_dir in keyed:
            if is_dir:
                yield from self._walk(Path(entry.path), key_base + sort_name, "", top=False)
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while we listed
            yield ObjectInfo(key=key_base + entry.name, size=st.st_size, last_modified=st.st_mtime)

    def list_dirs(self, prefix: str = "") -> list[str]:
        folder = folder_prefix(prefix)
        base = self.root / folder if folder else self.root
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise BackendError(
                f"cannot list {folder or '/'} in {self.description}: {exc.strerror or exc}"
            ) from exc
        names = [
            e.name
            for e in entries
            if e.is_dir()
            and not (not folder and e.name == RESERVED_TOP_LEVEL)
            and _holds_a_file(Path(e.path))
        ]
        return sorted(names)

    # -- deletes -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a folder is not an object
        except OSError as exc:
            raise BackendError(f"cannot delete {key} in {self.description}: {exc.strerror or exc}") from exc
        self._prune_empty_dirs(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        count = 0
        folders: set[Path] = set()
        for info in list(self.list(prefix)):
            path = self.root / info.key
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BackendError(
                    f"cannot delete {info.key} in {self.description}: {exc.strerror or exc}"
                ) from exc
            count += 1
            folders.add(path.parent)
        # Deepest first, so a parent is tried only after its children are gone.
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            self._prune_empty_dirs(folder)
        return count

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""


def _holds_a_file(directory: Path) -> bool:
    """Whether a folder holds at least one file at any depth (stops at the first)."""
    return any(filenames for _dirpath, _dirnames, filenames in os.walk(directory))
