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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_file",
    "move_directory_into_place",
    "plain_json",
    "recover_directory",
    "remove_stale_temporaries",
    "temporary_directory_for",
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


def _default_dir_mode() -> int:
    """``0o777`` less the umask: the permissions ``mkdir`` would give a new folder."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _plain_permissions(tree: Path) -> None:
    """Give ``tree`` (from ``mkdtemp``, 0700) and everything in it the permissions of plainly
    created folders and files (``mkdtemp`` / ``mkstemp`` make them private)."""
    dir_mode, file_mode = _default_dir_mode(), _default_mode()
    os.chmod(tree, dir_mode)
    for root, dirs, files in os.walk(tree):
        for d in dirs:
            os.chmod(os.path.join(root, d), dir_mode)
        for f in files:
            os.chmod(os.path.join(root, f), file_mode)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the system or file system cannot."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


#: Names of the temporaries this module leaves behind when a process is killed mid-write:
#: ``.NAME.XXXXXXXX.tmp`` files (:func:`atomic_file`), ``.NAME.XXXXXXXX`` folders and
#: ``.NAME.old`` folders (:func:`write_directory_atomically`).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}(?:\.tmp)?|old)$")


def recover_directory(path: str | os.PathLike) -> Path:
    """Finish a directory swap a killed process left half done: when ``path`` is missing and
    its previous version ``.NAME.old`` is there, move it back. Returns ``path``."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    return path


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove what killed writers left in ``folder``: temporary files and folders of
    :func:`atomic_file` and :func:`write_directory_atomically` (all of them, or those of
    ``name`` only), after :func:`recover_directory` of every half-swapped folder. Only call
    it when no other process writes there. Returns the paths removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        m = _TEMPORARY.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if entry.name.endswith(".old"):
            recover_directory(folder / m["name"])
            if not entry.exists():
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def write_directory_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Let ``write(tmp_dir)`` fill a temporary directory, then move it to ``path`` in one step
    (an existing ``path`` is replaced: swapped in one ``renameat2`` on Linux, else by two
    renames that the next call, or :func:`recover_directory`, completes if a kill comes
    between them). An exception inside ``write`` leaves ``path`` as it was. The folder and
    its files get the permissions of plainly created ones (umask respected).
    """
    path = Path(path)
    tmp = temporary_directory_for(path)
    try:
        write(tmp)
        move_directory_into_place(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def temporary_directory_for(path: str | os.PathLike) -> Path:
    """A fresh hidden folder beside ``path`` (``.NAME.XXXXXXXX``) to fill and then hand to
    :func:`move_directory_into_place`; what killed writers left for ``path`` is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))


def move_directory_into_place(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make the filled folder ``tmp`` (a sibling of ``path``) ``path``, replacing an existing
    one in one ``renameat2`` exchange on Linux, else by two renames that
    :func:`recover_directory` completes if a kill comes between them. ``tmp`` and its files
    get the permissions of plainly created ones (umask respected)."""
    tmp, path = Path(tmp), Path(path)
    _plain_permissions(tmp)
    if not path.exists():
        os.replace(tmp, path)
    elif _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous version
    else:
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    return path
