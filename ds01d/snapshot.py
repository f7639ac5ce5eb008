"""``var/cache/ds01/limits.snapshot``: every known user's effective limits, as ``ds01 limits
--json`` prints them, so the commands users type need not parse YAML (their start-up is
measured), nor the whole snapshot: one user is looked up in it.

Written by whoever loads a valid configuration and may write there (ds01d; the CLI on a
simulated root). It is used only while (a) the configuration files still have the
fingerprint it was made from, (b) no lifecycle exemption has started or ended since
(``valid_until``), and (c) it is owned by root or the caller and writable by no one else.
Anything else falls back to loading the configuration. Standard library only.

The format is lines, so that one user's answer is found with a byte search and one small
JSON value is parsed (users with equal limits share one body)::

    ds01 limits snapshot 2
    H {"fingerprint": [...], "valid_until": null, "unlisted": 0}
    U <user as listed> <body number>        one a line, sorted
    L <user name without @domain>           every name listed, in any spelling
    B <body number> {"group": ..., "limits": {...}, ...}
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # mypy reads this name as True; importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import Any

RELATIVE = "var/cache/ds01/limits.snapshot"
CONFIG_FILES = ("resource-limits.yaml", "user-overrides.yaml", "lifecycle-exemptions.yaml",
                "mig-layout.yaml")
MAGIC = b"ds01 limits snapshot 2\n"


def config_files(etc: str) -> list[str]:
    """Every file whose change changes desired state: the YAML files and members files."""
    groups = os.path.join(etc, "groups")
    try:
        members = sorted(n for n in os.listdir(groups) if n.endswith(".members"))
    except OSError:
        members = []
    return ([os.path.join(etc, n) for n in CONFIG_FILES] + [groups]
            + [os.path.join(groups, n) for n in members])


def fingerprint(paths: list[str]) -> list[list[Any]]:
    """What changes when a file is edited, replaced or re-owned (a ``stat`` each; its ctime
    too, which no one can set back: an edit that keeps the size and restores the mtime is
    seen)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append([p, st.st_mtime_ns, st.st_size, st.st_ino, st.st_uid, st.st_ctime_ns])
    return out


def _trusted(fd: int) -> bool:
    st = os.fstat(fd)
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _trusted(fd):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _line(data: bytes, prefix: bytes) -> bytes | None:
    """The rest of the line that starts with ``prefix`` (after a newline), if any."""
    at = data.find(b"\n" + prefix)
    if at < 0:
        return None
    start = at + 1 + len(prefix)
    end = data.find(b"\n", start)
    return data[start:end if end >= 0 else len(data)]


def lookup(root: str, etc: str, user: str, now_iso: str) -> dict[str, Any] | None:
    """``user``'s limits from the snapshot, or ``None`` when it cannot answer for sure."""
    from ds01d.jsonfast import loads
    from ds01d.names import is_user_name

    if not is_user_name(user):
        return None
    data = _read(os.path.join(root, RELATIVE))
    if data is None or not data.startswith(MAGIC):
        return None
    try:
        header = loads(_line(data, b"H ") or b"")
        until = header.get("valid_until")
        if header.get("fingerprint") != fingerprint(config_files(etc)) or \
                (until and now_iso >= until):
            return None
        number = _number(data, user, header.get("unlisted"))
        if number is None:
            return None
        body = loads(_line(data, b"B %d " % number) or b"")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return {"user": user, **body} if isinstance(body, dict) else None


def listed(root: str, etc: str, user: str) -> bool | None:
    """Whether the configuration names ``user`` (``None``: the snapshot cannot say)."""
    from ds01d.jsonfast import loads
    from ds01d.names import is_user_name

    data = _read(os.path.join(root, RELATIVE))
    if data is None or not data.startswith(MAGIC) or not is_user_name(user):
        return None
    try:
        header = loads(_line(data, b"H ") or b"")
        if header.get("fingerprint") != fingerprint(config_files(etc)):
            return None
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    local = user.split("@", 1)[0].encode()
    return _line(data, b"U " + user.encode() + b" ") is not None or \
        _line(data, b"L " + local) == b""


def made_from(root: str, fingerprint: object, made_by: str, now_iso: str
              ) -> tuple[bool, str | None]:
    """Whether the snapshot on disk is what this configuration makes (the same files, by the
    same ds01 version, no exemption started or ended since), and its ``valid_until``: a new
    ds01d keeps it rather than computing every user's limits again. Unix groups are the
    caller's to rule out (their members may have changed while no one looked)."""
    from ds01d.jsonfast import loads

    data = _read(os.path.join(root, RELATIVE))
    if data is None or not data.startswith(MAGIC):
        return False, None
    try:
        header = loads(_line(data, b"H ") or b"")
        until = header.get("valid_until")
        same = header.get("fingerprint") == fingerprint and header.get("made_by") == made_by \
            and (until is None or (isinstance(until, str) and now_iso < until))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False, None
    return bool(same), until if same else None


def _number(data: bytes, user: str, unlisted: object) -> int | None:
    """The body of ``user``: their own entry, else the unlisted users' (unless their name is
    listed in another spelling, or Unix groups decide: then only the configuration knows)."""
    own = _line(data, b"U " + user.encode() + b" ")
    if own is not None:
        return int(own)
    local = user.split("@", 1)[0].encode()
    if _line(data, b"L " + local) == b"" or not isinstance(unlisted, int):
        return None
    return unlisted


def write(root: str, body: dict[str, Any]) -> bool:
    """Replace the snapshot atomically; ``False`` when this caller may not write there."""
    import json

    from ds01d.fsutil import write_atomic

    path = os.path.join(root, RELATIVE)
    header = {"fingerprint": body["fingerprint"], "valid_until": body["valid_until"],
              "unlisted": body["unlisted"], "made_by": body.get("made_by")}
    lines = [MAGIC.decode().rstrip("\n"), "H " + json.dumps(header, separators=(",", ":"))]
    lines += [f"U {u} {n}" for u, n in sorted(body["users"].items())]
    lines += [f"L {name}" for name in body["named"]]
    lines += [f"B {i} " + json.dumps(b, separators=(",", ":"), sort_keys=True)
              for i, b in enumerate(body["bodies"])]
    text = "\n".join(lines) + "\n"
    if _read(path) == text.encode():
        return True  # already right: a restart rewrites nothing
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, text, durable=False)
    except OSError:
        return False
    return True


def layout_stamp(etc: str) -> list[int] | None:
    """``mig-layout.yaml`` as it is now (mtime, size, inode; ``None``: none): ``gpus.json``
    carries the one it was made with, so ``ds01 want`` knows when the host's profiles it
    lists may be about to change (an edit ds01d has not read yet)."""
    try:
        st = os.stat(os.path.join(etc, "mig-layout.yaml"))
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]
