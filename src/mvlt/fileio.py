"""Crash-safe file writes: write to a temporary name in the same folder, then rename.

A reader (or a resumed run) sees either the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _temporary(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (0644 under umask 022).
    Linux reports the umask in /proc; elsewhere it is read by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove what a killed :func:`atomic_directory` or :func:`atomic_write` left beside ``path``
    (``.NAME.tmp-PID`` / ``.NAME.old-PID`` of a process no longer running): a kill skips the
    ``finally`` that removes them, and nothing else ever would. Returns what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.glob(f".{glob.escape(path.name)}.*-*"):
        kind, _, pid = entry.name[len(path.name) + 2 :].partition("-")
        if kind not in ("tmp", "old") or not pid.isascii() or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or _alive(int(pid)):
            continue  # ours, or another writer's still at work
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` over ``path``, with the mode a plain
    ``open()`` would give it: writers that go through a private temporary file themselves
    (safetensors' ``save_file``) leave it 0600, unreadable beside its 0644 neighbours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Fill a temporary directory, then move it to ``path`` (replacing an older one) on success.
    Temporaries of an earlier, killed writer of ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temporary(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        old = _temporary(path, "old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_json(path: str | Path, *, missing: str, error: type[Exception] = ValueError) -> Any:
    """Parse a JSON file. A missing file raises ``FileNotFoundError(missing)``; unreadable or
    invalid JSON raises ``error`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON: {err}") from err
