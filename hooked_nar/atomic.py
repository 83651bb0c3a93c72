"""Atomic writes: a file or directory at its final path is either complete or absent.

Every writer fills a temporary file (or directory) in the destination's folder and moves it
into place with ``os.replace``; an exception or interruption leaves the destination as it
was and removes the temporary.

>>> with atomic_file("runs/x/data.pt") as fh:   # any writer that takes a file object
...     torch.save(obj, fh)                      # (fig.savefig(fh, format="png"), ...)
>>> write_text_atomic("runs/x/report.md", text)
>>> write_json_atomic("runs/x/results.json", {"auroc": torch.tensor(0.97), "test": result})
>>> write_directory_atomically("ckpt/best", lambda tmp: save_files(tmp))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_file",
    "plain_json",
    "write_bytes_atomic",
    "write_directory_atomically",
    "write_json_atomic",
    "write_text_atomic",
]


def _default_mode() -> int:
    """``0o666`` less the umask: the permissions ``open`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit flush it to disk
    and ``os.replace`` it onto ``path``, on an exception delete it. Creates missing parent
    folders; the file gets the permissions of a plainly created one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_file(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def plain_json(x: Any) -> Any:
    """``x`` with only JSON types: objects with ``as_dict()`` expanded, tensors / numpy values
    as lists or numbers, tuples as lists, keys as strings, NaN and inf as None."""
    if isinstance(x, dict):
        return {str(k): plain_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_json(v) for v in x]
    if hasattr(x, "as_dict"):
        return plain_json(x.as_dict())
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return plain_json(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 1) -> Path:
    """Write :func:`plain_json` of ``obj`` to ``path`` atomically; returns the path."""
    return write_text_atomic(path, json.dumps(plain_json(obj), indent=indent) + "\n")


def write_directory_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Let ``write(tmp_dir)`` fill a temporary directory, then move it to ``path`` in one step
    (an existing ``path`` is replaced). An exception inside ``write`` leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
