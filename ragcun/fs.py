"""Writing output directories without ever destroying what ragcun did not write.

A directory output (an index, a report) is assembled in a hidden sibling and moved into place with
:func:`replace_directory`. The target must be absent, an empty directory, or a directory that ragcun wrote
as the same kind of output (it holds the marker file :data:`OUTPUT_MARKER` naming that kind). An old output
is renamed aside, the new one renamed in, and only then is the old one deleted: a crash at any moment
leaves either the old or the new output in place, never neither, and a user's folder (``--output_dir .``,
``--output_dir runs``) is refused before any work is done.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragcun.errors import RagcunError

OUTPUT_MARKER = ".ragcun-output"


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without an error it is renamed over
    ``path`` (readers see the old file or the new one, never half of one), otherwise it is removed. The
    sibling keeps ``path``'s suffix, for writers that add or check one (``np.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OutputDirectoryError(RagcunError):
    """The output path holds something that ragcun did not write; nothing was changed."""


def written_by_ragcun(directory: Path, kind: str) -> bool:
    marker = directory / OUTPUT_MARKER
    try:
        return json.loads(marker.read_text()).get("kind") == kind
    except (OSError, ValueError, AttributeError):
        return False


def check_output_directory(target: str | os.PathLike, kind: str,
                           also_ours: Callable[[Path], bool] | None = None, flag: str = "--output_dir") -> Path:
    """Raise unless ``target`` may be replaced by a new ``kind`` output; returns it as a Path.

    ``also_ours`` recognises outputs written before the marker existed (an index's manifest)."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return target
    if target.is_symlink() or not target.is_dir():
        raise OutputDirectoryError(f"{flag} {target}: exists and is not a directory; refusing to replace it")
    if not any(target.iterdir()) or written_by_ragcun(target, kind) or (also_ours is not None and also_ours(target)):
        return target
    raise OutputDirectoryError(
        f"{flag} {target}: a non-empty directory that is not a ragcun {kind}; refusing to replace it "
        f"(choose a new or empty directory)")


def staging_directory(target: str | os.PathLike) -> Path:
    """A fresh hidden sibling of ``target`` to assemble an output in (same filesystem, so renames are atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_directory(staged: str | os.PathLike, target: str | os.PathLike, kind: str,
                      also_ours: Callable[[Path], bool] | None = None, flag: str = "--output_dir") -> Path:
    """Move the assembled ``staged`` directory to ``target``: mark it, check the target again (it may have
    changed since the work began), rename any old output aside, rename the new one in, delete the old."""
    staged, target = Path(staged), Path(target)
    (staged / OUTPUT_MARKER).write_text(json.dumps({"kind": kind}) + "\n")
    check_output_directory(target, kind, also_ours, flag)
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
    try:
        os.replace(staged, target)
    except BaseException:
        if aside is not None:
            os.replace(aside, target)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target
