"""report: Report.to_json, report.json and the terminal table."""

from __future__ import annotations

import json
import re

from trimcage.policy.builder import build_policy
from trimcage.policy.interface import PolicyInputs
from trimcage.report.interface import ImageStats
from trimcage.report.render import make_report, render_table, write_report


def _report(**kw):
    policy = build_policy(PolicyInputs(
        syscalls=frozenset({"read", "write", "socket", "bind", "listen", "accept4", "openat"}),
        arguments={"socket": {"0": (2,)}}, privileged_ops=({"op": "bind", "port": 80},),
        user="0:0"))
    return make_report("nginx", ImageStats(150_000_000, 5000, 120), ImageStats(9_000_000, 210, 9),
                       policy, packages_removed=["perl-base", "apt", "apt"],
                       syscalls_per_mode={"static": 80, "dynamic": 40, "combined": 82},
                       timings={"trace": 3.21, "slim": 1.5},
                       attacks=[{"attack": "exec_sh", "blocked": True, "errno": "ENOENT"}], **kw)


def test_report_json_is_stable(tmp_path):
    r = _report()
    j = r.to_json()
    assert j["known_vulnerability_estimate"]["packages_removed"] == 2
    assert "not a CVE scan" in j["known_vulnerability_estimate"]["note"]
    assert j["packages_removed"] == ["apt", "perl-base"]
    assert j["image"]["bytes_reduction_percent"] == 94.0
    assert j["surface"]["syscalls_total"] == 362 and j["docker_default"]["syscalls_allowed"] == 295
    assert j["argument_rules"] == ["socket"] and j["capabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert j["attacks"] == [{"attack": "exec_sh", "blocked": True}]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_report(r, a)
    write_report(_report(), b)
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["syscalls_per_mode"] == {"combined": 82, "dynamic": 40,
                                                              "static": 80}


def test_table_plain_and_aligned():
    r = _report()
    text = render_table(r, color=False)
    assert "\033" not in text
    lines = text.splitlines()
    block = lines[lines.index(next(l for l in lines if l.startswith("lock-down"))):]
    block = block[:block.index("")]
    # right-aligned numeric columns: every row of the block ends at the same column
    assert len({len(l) for l in block}) == 1, block
    s, d = r.surface, r.docker
    row = next(l for l in block if l.startswith("kernel CVEs mitigated"))
    assert re.search(rf"{len(s.cves_mitigated)}/59\s+{len(d.cves_mitigated)}/59$", row)
    assert "2 packages removed (a package count, not a CVE scan)" in text
    assert "attacks blocked: 1/1" in text
    assert "\033[1m" in render_table(r, color=True)
