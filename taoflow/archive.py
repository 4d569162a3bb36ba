"""Safe tar extraction: every member is checked before a single byte is written.

Datasets arrive as tarballs from users and buckets we do not control. A member named `../x` or `/etc/x`, or
a link whose target leaves the extraction folder, would let an archive write anywhere the process can. So the
whole member list is validated first (no absolute paths, no `..`, no device/FIFO files, links only to places
inside the target), and only then are regular files and directories written — links are recreated only when
they stay inside.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path

from taoflow.errors import UserError


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_members(archive_name: str, members: list[tarfile.TarInfo], target: Path) -> None:
    """Raise UserError listing every unsafe member (nothing has been written yet)."""
    root = os.path.realpath(target)
    problems = []
    for m in members:
        name = m.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            problems.append(f"{name}: absolute path")
            continue
        if ".." in parts:
            problems.append(f"{name}: path contains '..'")
            continue
        dest = os.path.realpath(os.path.join(root, name))
        if not _inside(root, dest):
            problems.append(f"{name}: resolves outside the target folder")
            continue
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            problems.append(f"{name}: device or FIFO file")
            continue
        if m.issym() or m.islnk():
            link = m.linkname
            if link.startswith("/") or (m.islnk() and ".." in link.split("/")):
                problems.append(f"{name}: link to {link!r} points outside the target folder")
                continue
            base = os.path.dirname(dest) if m.issym() else root
            resolved = os.path.realpath(os.path.join(base, link))
            if not _inside(root, resolved):
                problems.append(f"{name}: link to {link!r} points outside the target folder")
        elif not (m.isfile() or m.isdir()):
            problems.append(f"{name}: unsupported member type")
    if problems:
        raise UserError(f"refusing to extract {archive_name}: unsafe members", problems)


def safe_extract(archive: str | Path, target: str | Path) -> list[str]:
    """Extract `archive` into `target` after checking every member; returns the member names written."""
    target = Path(target)
    try:
        return _extract(archive, target)
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"cannot extract archive {archive}: {exc}") from None


def _extract(archive: str | Path, target: Path) -> list[str]:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        check_members(str(archive), members, target)
        target.mkdir(parents=True, exist_ok=True)
        root = os.path.realpath(target)
        written = []
        links = []
        for m in members:
            dest = os.path.join(root, m.name)
            if m.isdir():
                os.makedirs(dest, exist_ok=True)
            elif m.isfile():
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                # A symlink planted earlier in this archive must not redirect the write.
                if not _inside(root, os.path.realpath(os.path.dirname(dest))):
                    raise UserError(f"refusing to extract {archive}: {m.name} would be written through a link")
                if os.path.islink(dest):
                    os.unlink(dest)
                with tar.extractfile(m) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.chmod(dest, (m.mode or 0o644) & 0o755 | 0o600)
            else:
                links.append(m)
                continue
            written.append(m.name)
        for m in links:  # after files, so hard-link sources exist
            dest = os.path.join(root, m.name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if m.issym():
                os.symlink(m.linkname, dest)
            else:
                shutil.copyfile(os.path.join(root, posixpath.normpath(m.linkname)), dest)
            written.append(m.name)
    return written
