"""Segment files apart from their mappings: room, private directories, freeing.

``has_room`` and ``ensure_private_dir`` decide where a new segment may go.

``retire`` frees a released value's segment unless someone still holds it
(a view a user kept: ``busy``, retried later), parking it in the free pool
when it is small enough to be worth reusing; ``remove`` unlinks at once
(end of a run, orphans of dead drivers). Both truncate first when nobody
holds the segment, so mapping caches of idle processes give the pages back.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import stat

from ..settings import tuning

__all__ = ["ensure_private_dir", "free_name", "has_room", "parse_free_size", "remove", "retire"]


def has_room(directory: str, size: int) -> bool:
    """Whether ``directory`` exists and has ``size`` bytes free beyond a small reserve."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= size + tuning().reserve


def ensure_private_dir(directory: str) -> None:
    """Create ``directory`` (0700) if needed; tighten it to 0700 if it is ours."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def free_name(prefix: str, seq: int, size: int) -> str:
    """The name under which a released segment waits in the free pool."""
    return f"{prefix}f-{seq:012d}-{size}-{secrets.token_hex(8)}"


def parse_free_size(rest: str) -> int:
    """The size encoded in a free-pool name (after its ``f-`` mark); -1 if malformed."""
    try:
        return int(rest.split("-")[1])
    except (IndexError, ValueError):
        return -1


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def retire(path: str, recycle_as: str | None) -> str:
    """Free one segment unless someone holds it: ``recycled|unlinked|busy|gone``.

    With ``recycle_as`` the segment is renamed into the free pool; otherwise
    it is truncated (freeing pages that idle mapping caches still map) and
    unlinked.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return "gone"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"
        if recycle_as is not None:
            os.rename(path, os.path.join(os.path.dirname(path), recycle_as))
            return "recycled"
        os.ftruncate(fd, 0)
        _unlink(path)
        return "unlinked"
    finally:
        os.close(fd)


def remove(path: str) -> bool:
    """Unlink a segment now, truncating it first when nobody holds it; False if gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        fd = -1  # not ours to open (or not a file): still try to unlink it
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.ftruncate(fd, 0)
            except OSError:
                pass  # held by a live view: unlink only, pages go with the view
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    finally:
        if fd >= 0:
            os.close(fd)


