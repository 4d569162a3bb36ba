"""Safe tar extraction: unsafe members are refused before anything is written, inside or outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from taoflow.archive import safe_extract
from taoflow.errors import UserError


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tuple):
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(member)
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def sandbox(tmp_path):
    """`sandbox/target` is where we extract; everything else under `sandbox` must stay untouched."""
    (tmp_path / "target").mkdir()
    return tmp_path


@pytest.mark.parametrize(("bad", "reason"), [
    (("../x", b"escape"), "'..'"),
    (("sub/../../x", b"escape"), "'..'"),
    (("/tmp/taoflow-abs-x", b"absolute"), "absolute path"),
    (_link("evil", "/etc/passwd"), "points outside"),
    (_link("evil", "../../outside"), "points outside"),
    (_link("hard", "../outside", tarfile.LNKTYPE), "points outside"),
])
def test_unsafe_member_refuses_the_whole_archive(sandbox, bad, reason):
    archive = _tar(sandbox / "a.tar.gz", [("ok/first.txt", b"fine"), bad, ("ok/last.txt", b"fine")])
    before = _files(sandbox)
    with pytest.raises(UserError) as err:
        safe_extract(archive, sandbox / "target")
    assert reason in str(err.value) and "refusing to extract" in str(err.value)
    assert _files(sandbox) == before  # nothing written: not even the safe members
    assert not Path("/tmp/taoflow-abs-x").exists()


def test_device_files_are_refused(sandbox):
    dev = tarfile.TarInfo("dev/null")
    dev.type = tarfile.CHRTYPE
    archive = _tar(sandbox / "a.tar.gz", [dev])
    with pytest.raises(UserError, match="device"):
        safe_extract(archive, sandbox / "target")


def test_write_through_an_inside_symlink_to_outside_is_refused(sandbox):
    archive = _tar(sandbox / "a.tar.gz", [_link("dir", "."), ("dir/../../x", b"x")])
    with pytest.raises(UserError):
        safe_extract(archive, sandbox / "target")
    assert not (sandbox / "x").exists()


def test_safe_archive_extracts_with_inside_links(sandbox):
    archive = _tar(sandbox / "a.tar.gz", [("train/a/rgb/000000.png", b"png"), _link("train/latest", "a"),
                                          ("train/b.txt", b"b")])
    written = safe_extract(archive, sandbox / "target")
    assert set(written) == {"train/a/rgb/000000.png", "train/latest", "train/b.txt"}
    assert (sandbox / "target" / "train" / "latest" / "rgb" / "000000.png").read_bytes() == b"png"


def test_not_an_archive_is_a_user_error(sandbox):
    (sandbox / "x.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(UserError, match=r"x\.tar\.gz"):
        safe_extract(sandbox / "x.tar.gz", sandbox / "target")
