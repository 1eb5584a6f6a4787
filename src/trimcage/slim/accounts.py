"""Cut /etc/passwd and /etc/group to the accounts the slim image uses.

An account is in use when it is root, the image's configured user, the owner
of a kept file, or a uid the trace switched to. A group is in use when it is
the primary group of a kept account, owns a kept file, or names a kept account
as a member.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from trimcage.image.interface import Index

Reader = Callable[[str], bytes]


def parse_colon_file(text: str, min_fields: int) -> list[list[str]]:
    """Split a passwd/group style file into records; comments and short lines are dropped."""
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            rows.append(fields)
    return rows


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _read_text(index: Index, read: Reader, path: str) -> str | None:
    real = index.resolve(path)
    if real is None or not index[real].is_file:
        return None
    try:
        return read(real).decode("utf-8", "surrogateescape")
    except OSError:
        return None


def configured_user(config: Mapping, passwd: list[list[str]]) -> tuple[int | None, int | None]:
    """Return (uid, gid) of the config's ``User`` (name or number, ``user:group``); Nones if unset/unknown."""
    user = str(config.get("User") or "")
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    uid = _int(name)
    gid = _int(group) if group else None
    for row in passwd:
        if row[0] == name or (uid is not None and _int(row[2]) == uid):
            uid = _int(row[2])
            if gid is None:
                gid = _int(row[3])
            break
    return uid, gid


def named_in_configs(index: Index, read: Reader, kept: set[str], names: Iterable[str],
                     limit: int = 1 << 20) -> set[str]:
    """Account names that occur as a word in a kept file under /etc.

    Static analysis cannot see ``user www-data;`` in nginx.conf; the account a
    configuration names must survive the cut or the service cannot drop privileges.
    """
    import re

    wanted = {n for n in names if n and n != "root"}
    if not wanted:
        return set()
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(sorted(map(re.escape, wanted), key=len, reverse=True))
                         + r")(?![\w.-])")
    found: set[str] = set()
    for p in sorted(kept):
        e = index.get(p)
        if not p.startswith("/etc/") or e is None or e.type != "file" or e.size > limit \
                or p in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"):
            continue
        try:
            text = read(p).decode("utf-8", "replace")
        except OSError:
            continue
        found.update(pattern.findall(text))
    return found


def cut_accounts(index: Index, read: Reader, kept: set[str], config: Mapping,
                 extra_uids: Iterable[int] = ()) -> dict[str, bytes]:
    """Return rewritten contents for /etc/passwd and /etc/group (only for the kept ones).

    Accounts in use: root, the config's user, owners of kept files, ``extra_uids``
    and accounts a kept configuration file under /etc names (:func:`named_in_configs`).
    Lines are kept verbatim and in their original order; nothing is added.
    """
    overlay: dict[str, bytes] = {}
    passwd_path, group_path = index.resolve("/etc/passwd"), index.resolve("/etc/group")
    passwd_text = _read_text(index, read, "/etc/passwd")
    group_text = _read_text(index, read, "/etc/group")
    passwd = parse_colon_file(passwd_text or "", 7)
    uids = {0, *extra_uids}
    gids = {0}
    for p in kept:
        e = index[p]
        uids.add(e.uid)
        gids.add(e.gid)
    named = named_in_configs(index, read, kept, [r[0] for r in passwd])
    uids.update(u for row in passwd if row[0] in named and (u := _int(row[2])) is not None)
    uid, gid = configured_user(config, passwd)
    if uid is not None:
        uids.add(uid)
    if gid is not None:
        gids.add(gid)
    names = set()
    if passwd_text is not None and passwd_path in kept:
        lines = []
        for line in passwd_text.splitlines():
            f = line.split(":")
            if len(f) >= 7 and _int(f[2]) in uids:
                lines.append(line)
                names.add(f[0])
                g = _int(f[3])
                if g is not None:
                    gids.add(g)
        overlay[passwd_path] = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if group_text is not None and group_path in kept:
        lines = []
        for line in group_text.splitlines():
            f = line.split(":")
            if len(f) < 4:
                continue
            members = [m for m in f[3].split(",") if m]
            if _int(f[2]) in gids or names.intersection(members):
                f[3] = ",".join(m for m in members if m in names)
                lines.append(":".join(f))
        overlay[group_path] = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    return overlay
