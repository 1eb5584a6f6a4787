"""``trimcage inspect IMAGE [--json]``: the attack-surface inventory of an image.

Reads the image into the store, flattens it, extracts it (cached) and prints
:func:`trimcage.image.inventory.inventory` as a summary table or, with
``--json``, as sorted JSON on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from trimcage.cli.common import add_transport_options, transport_options
from trimcage.util import dump_pretty

SHOW = 6  # items shown per list in the table before "+N more"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="list what an image carries that an attacker could use",
                       description="Report an image's config, OS, file counts, ELF files, shells, "
                       "interpreters, package managers, network tools, setuid/setgid files, file "
                       "capabilities, world-writable paths, login accounts and installed packages.")
    p.add_argument("image", metavar="IMAGE", help="image reference (see `trimcage --help`)")
    p.add_argument("--json", action="store_true", help="print the inventory as JSON")
    add_transport_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten
    from trimcage.image.inventory import RootfsReader, inventory
    from trimcage.image.store import open_store

    store = open_store()
    image = read_image(args.image, store, transport_options(args))
    index = flatten(image, store)
    root = rootfs(image, store)
    inv = inventory(image, index, RootfsReader(root), reference=args.image)
    if args.json:
        sys.stdout.write(dump_pretty(inv.to_json()))
    else:
        sys.stdout.write(render_text(inv.to_json()))
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _short(items: Sequence[str], show: int = SHOW) -> str:
    if not items:
        return "-"
    head = ", ".join(items[:show])
    return head + (f" (+{len(items) - show} more)" if len(items) > show else "")


def _paths(items: Sequence[dict[str, Any]]) -> list[str]:
    return [i["path"] + (f" -> {i['target']}" if "target" in i else "") for i in items]


def render_text(j: dict[str, Any]) -> str:
    """The terminal form of an inventory's JSON: one ``label  value`` row per line, no JSON."""
    img, cfg, osr = j["image"], j["config"], j["os"]
    rows: list[tuple[str, str]] = [
        ("image", img["reference"]),
        ("manifest", img["manifest_digest"]),
        ("image id", img["image_id"]),
        ("platform", f"{img['os']}/{img['architecture']}".strip("/") or "-"),
        ("layers", f"{img['layers']} ({_human(img['compressed_size'])} compressed)"),
        ("os", (osr or {}).get("PRETTY_NAME") or (osr or {}).get("ID") or "-"),
        ("entrypoint", " ".join(cfg["entrypoint"]) if cfg["entrypoint"] else "-"),
        ("cmd", " ".join(cfg["cmd"]) if cfg["cmd"] else "-"),
        ("user", cfg["user"] or "(root)"),
        ("workdir", cfg["workdir"] or "-"),
        ("env", _short(cfg["env"], 4)),
        ("exposed ports", _short(cfg["exposed_ports"])),
        ("volumes", _short(cfg["volumes"])),
        ("labels", _short([f"{k}={v}" for k, v in cfg["labels"].items()], 3)),
        ("stop signal", cfg["stop_signal"] or "-"),
        ("files", f"{j['files']} regular ({_human(j['bytes'])}), {j['directories']} directories, "
                  f"{j['symlinks']} symlinks, {j['hardlinks']} hardlinks, {j['other']} other"),
        ("ELF", f"{j['elf_executables']} executables, {j['shared_libraries']} shared libraries"),
    ]
    for key, label in (("shells", "shells"), ("interpreters", "interpreters"),
                       ("package_managers", "package managers"), ("network_tools", "network tools"),
                       ("setuid", "setuid"), ("setgid", "setgid")):
        rows.append((f"{label} ({len(j[key])})", _short(_paths(j[key]))))
    rows.append((f"file capabilities ({len(j['file_capabilities'])})",
                 _short([f"{c['path']} {','.join(c.get('permitted', []))}" for c in j["file_capabilities"]])))
    rows.append((f"world-writable ({len(j['world_writable'])})",
                 _short([w["path"] + (" (sticky)" if w["sticky"] else "") for w in j["world_writable"]])))
    rows.append((f"login accounts ({len(j['login_accounts'])})",
                 _short([f"{a['name']} ({a['shell']})" for a in j["login_accounts"]])))
    rows.append((f"packages ({len(j['packages'])})",
                 _short([f"{p['name']} {p['version']}" for p in j["packages"]])))
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k.ljust(width)}  {_clean(v)}\n" for k, v in rows)


def _clean(s: str) -> str:
    """Escape control characters so hostile paths or labels cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
