"""A local pyarrow filesystem whose every written file appears whole or not at all.

Ray Train writes its run state (`checkpoint_manager_snapshot.json`) and uploads each
checkpoint's files through the storage filesystem. pyarrow's `LocalFileSystem` writes in
place, so a full disk left the snapshot empty, and a rerun could not resume at all
(`CheckpointManagerInitializationError`). Here each output stream writes a temporary
file in the same folder, syncs it, and renames it over the target on a clean close; a
failed write removes it and leaves the previous file as it was.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.fs


class _AtomicFile(io.RawIOBase):
    """A write-only file that replaces `path` on close, unless a write failed."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        fd, self.tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=".tmp-")
        self._out = os.fdopen(fd, "wb")
        self._failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self._out.write(data)
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._out.flush()
                os.fsync(self._out.fileno())
            self._out.close()
            if not self._failed:
                os.replace(self.tmp, self.path)
        except BaseException:
            self._failed = True
            raise
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
            super().close()


class AtomicLocalHandler(pyarrow.fs.FileSystemHandler):
    """`LocalFileSystem`, except that output streams are atomic (see the module doc)."""

    def __init__(self) -> None:
        self.fs = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __hash__(self) -> int:
        return hash(type(self))

    def get_type_name(self) -> str:
        return "atomic-local"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pyarrow.fs.FileSelector) -> list:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the filesystem root")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self.fs.open_input_stream(src) as source, _open(dest) as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        return _open(path)

    def open_append_stream(self, path: str, metadata: Any = None) -> pyarrow.NativeFile:
        return self.fs.open_append_stream(path)


def _open(path: str) -> pyarrow.NativeFile:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return pyarrow.PythonFile(_AtomicFile(path), mode="w")


def atomic_local_filesystem() -> pyarrow.fs.PyFileSystem:
    return pyarrow.fs.PyFileSystem(AtomicLocalHandler())
