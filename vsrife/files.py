"""Files written all at once: a new temporary file beside the destination, renamed onto it when complete.

The temporary file is created with ``O_CREAT | O_EXCL`` under a random name, so nothing planted in the
folder beforehand (a file or a symlink, under any name) is ever opened or written through: if the name is
taken, another is drawn. It is written through the descriptor that created it and removed on any failure.
Unlike ``tempfile.mkstemp`` (mode 0600) it gets the permissions of any new file (0666 less the umask),
since it becomes the user's output or a cache file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "temporary_beside"]

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create(dest: Path, suffix: str = ".part") -> tuple[int, Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, _FLAGS, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {dest}")


@contextmanager
def temporary_beside(dest: Path, suffix: str = ".part") -> Iterator[tuple[BinaryIO, Path]]:
    """A new empty file beside ``dest``, open for reading and writing, and its path, which ends in
    ``suffix`` (a muxer that picks the container by extension needs the destination's own).

    It is removed when the block ends unless the caller renamed it away (``os.replace(path, dest)``,
    after closing the file).
    """
    fd, path = _create(dest, suffix)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f, path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(dest: Path) -> Iterator[BinaryIO]:
    """Write ``dest`` all at once: the block writes to a temporary file beside it, which replaces ``dest``
    when the block ends normally and is removed if it raises. A symlink at ``dest`` is replaced, never
    written through.
    """
    with temporary_beside(dest) as (f, tmp):
        yield f
        f.close()
        os.replace(tmp, dest)
