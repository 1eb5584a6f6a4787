"""Render ``bench/results.json`` (the dict ``bench/run.py`` makes) as ``RESULTS.md``.

    python3 bench/report_md.py bench/results.json > bench/RESULTS.md
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _mb(n: Any) -> str:
    return "–" if n is None else f"{n / 1e6:.1f}"


def _t(t: Any) -> str:
    if not t:
        return "fail"
    if len(t["runs_s"]) == 1:
        return f"{t['median_s']:.2f}"
    return f"{t['median_s']:.2f} ({t['min_s']:.2f}–{t['max_s']:.2f})"


def _m(t: Any) -> str:
    return "–" if not t else f"{t['peak_mem_mb']:.0f}"


def _g(d: Any, *keys: str, default: Any = "–") -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    S = doc["samples"]
    L: list[str] = []
    add = L.append
    add("# trimcage benchmark results\n")
    add("Produced by `bench/run.py` (see `bench/README.md`); the numbers below are also in `bench/results.json`.\n")
    add(f"Command: `{doc['command']}` — {doc['repeat']} run(s) per measurement (cold analysis: "
        f"{doc['repeat']} for nginx, {min(doc['repeat'], doc.get('cold_repeat') or doc['repeat'])} for the others), "
        f"whole bench {doc['total_seconds'] / 60:.1f} min.\n")
    add(f"Machine: {m['cores']} cores ({m['cpu']}), {m['mem_mb']} MB, kernel {m['kernel']}, Python {m['python']}; "
        f"{m['date']}; commit `{m['git_commit'][:12]}`{' (dirty tree)' if m.get('git_dirty') else ''}; "
        f"load average at start {m['load_average_start']}, at end {m.get('load_average_end')} "
        "(other jobs were running on the machine, so times are pessimistic).\n")

    add("## Size\n")
    add("Bytes are the uncompressed file contents (MB = 10^6 B), files = non-directory entries. "
        "Lower bound = the files the trace saw that exist in the image, plus the ELF loader of each "
        "executed binary, plus the symlinks and parent directories needed to reach them.\n")
    add("| image | original MB / files | slim combined | slim static | lower bound | combined / lower bound (bytes, files) | packages removed |")
    add("|---|---|---|---|---|---|---|")
    for n, s in S.items():
        z = s.get("size") or {}
        cell = lambda k: "fail" if k not in z else f"{_mb(z[k]['bytes'])} / {z[k]['files']}"  # noqa: E731
        add(f"| {n} | {cell('original')} | {cell('slim_combined')} | {cell('slim_static')} | {cell('lower_bound')} "
            f"| {_g(z, 'ratio_combined_to_lower_bound')} × , {_g(z, 'ratio_combined_to_lower_bound_files')} × "
            f"| {_g(s, 'protection', 'packages_removed')} of {_g(s, 'protection', 'packages_before')} |")
    add("")

    d = doc["docker_default"]
    add("## Syscalls\n")
    add(f"Allowed = x86-64 syscalls a profile allows (of {d['total']}; includes the {25} the container runtime "
        f"needs between filter and exec). Docker's default allows **{d['allowed_default_caps']}** with its 14 "
        f"default capabilities ({d['allowed_without_sys_chroot']} without CAP_SYS_CHROOT, which gates `chroot` — "
        "the data README's 294). Static analysis = syscalls the ELF analysis found (before adding the runtime's).\n")
    add("| image | observed (trace) | static analysis | dynamic | combined | static | Docker | static / observed | combined / observed |")
    add("|---|---|---|---|---|---|---|---|---|")
    for n, s in S.items():
        y = s.get("syscalls") or {}
        add(f"| {n} | {_g(y, 'observed')} | {_g(y, 'static_analysis')} | {_g(y, 'dynamic_allowed')} | "
            f"{_g(y, 'combined_allowed')} | {_g(y, 'static_allowed')} | {d['allowed_default_caps']} | "
            f"{_g(y, 'ratio_static_to_observed')} | {_g(y, 'ratio_combined_to_observed')} |")
    add("")
    add("### Argument rules and security-critical syscalls (combined profile)\n")
    add("Critical = the 18 syscalls Temporal Specialization / SysPart count "
        "(bind socket connect accept accept4 listen setreuid chmod mprotect recvfrom setuid setgid sendto "
        "execve execveat clone fork ptrace).\n")
    add("| image | argument rules on | critical still allowed | of them under argument rules |")
    add("|---|---|---|---|")
    for n, s in S.items():
        if "argument_rules" not in s:
            add(f"| {n} | fail | fail | fail |")
            continue
        crit = s["critical_open"]
        add(f"| {n} | {', '.join(s['argument_rules']) or 'none'} | {len(crit)}: {', '.join(crit)} | "
            f"{', '.join(s['critical_restricted']) or 'none'} |")
    add("")

    add("## Protection\n")
    add(f"Kernel CVEs mitigated (of {d['cves_total']}: none of the CVE's syscalls allowed) and exploit-db shellcode "
        f"payloads broken (of {d['payloads_total']}: at least one needed syscall denied). "
        f"Docker's default: **{d['cves_mitigated']}** CVEs, **{d['payloads_broken']}** payloads.\n")
    add("| image | CVEs combined | CVEs static | CVEs dynamic | payloads combined | payloads static | payloads dynamic | caps kept | read-only rootfs | attacks blocked (verify) | verify equivalent |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, s in S.items():
        p = s.get("protection") or {}
        v = s.get("verify") or {}
        att = f"{v['attacks_blocked']}/{v['attacks_total']}" if v else "fail"
        if v and not v["attacks_total"]:
            att += " (the battery reported nothing)"
        if v and v.get("attacks_open"):
            att += f" (open: {', '.join(v['attacks_open'])})"
        add(f"| {n} | {_g(p, 'combined', 'cves_mitigated')} | {_g(p, 'static', 'cves_mitigated')} | "
            f"{_g(p, 'dynamic', 'cves_mitigated')} | {_g(p, 'combined', 'payloads_broken')} | "
            f"{_g(p, 'static', 'payloads_broken')} | {_g(p, 'dynamic', 'payloads_broken')} | "
            f"{', '.join(p.get('capabilities') or []) or 'none'} | {_g(p, 'read_only_rootfs')} | {att} | "
            f"{_g(v, 'equivalent')} |")
    add("")

    add("## Time and memory\n")
    add("Seconds: median (min–max) over the runs; each run is its own process, peak memory = its "
        "`ru_maxrss` (MB; for trace/verify/overhead this is trimcage's process and the helpers it waited for, "
        "not the traced application). Cold analysis = fresh `TRIMCAGE_HOME` (no per-object cache, image read "
        "and extracted first: 'prepare'); warm = second run on the same store. Build = `build --mode combined "
        "--no-verify` with a warm analysis cache, traced afresh (read, flatten, extract, analyze, trace, slim, "
        "policy, write). Verify = the `verify` call on the combined output (original and slim runs, probes, "
        "attack battery).\n")
    add("| image | prepare (cold) | analysis cold | analysis warm | trace | build combined | verify | mem MB: analysis cold / warm / trace / build / verify |")
    add("|---|---|---|---|---|---|---|---|")
    for n, s in S.items():
        t = s.get("times") or {}
        add(f"| {n} | {_t(t.get('prepare_cold'))} | {_t(t.get('analyze_cold'))} | {_t(t.get('analyze_warm'))} | "
            f"{_t(t.get('trace'))} | {_t(t.get('build_combined'))} | {_t(t.get('verify'))} | "
            f"{_m(t.get('analyze_cold'))} / {_m(t.get('analyze_warm'))} / {_m(t.get('trace'))} / "
            f"{_m(t.get('build_combined'))} / {_m(t.get('verify'))} |")
    add("")
    add("Bench time per sample (all its runs, process wall time): " +
        ", ".join(f"{n} {s.get('bench_seconds', 0):.0f} s" for n, s in S.items()) + ".\n")

    add("## Tracing overhead\n")
    add("| image | what | untraced median (ms) | traced median (ms) | ratio | untraced p90 / traced p90 (ms) |")
    add("|---|---|---|---|---|---|")
    for n, s in S.items():
        o = s.get("overhead")
        if not o:
            add(f"| {n} | fail | | | | |")
            continue
        add(f"| {n} | {o['what']} | {o['untraced_median_s'] * 1e3:.2f} | {o['traced_median_s'] * 1e3:.2f} | "
            f"{o['ratio']:.2f} | {o['untraced_p90_s'] * 1e3:.2f} / {o['traced_p90_s'] * 1e3:.2f} |")
    add("")

    add("## Goals\n")
    add("Sorted by how far each is from its goal (value / target; above 1 = goal missed).\n")
    add("| goal | target | measured | value / target |")
    add("|---|---|---|---|")
    for g in doc["goals"]:
        add(f"| {g['goal']} | ≤ {g['target']} | {g['value']} | {g['factor']} |")
    add("")
    top = doc["goals"][:3]
    if top:
        add("Furthest from their goals: " + "; ".join(f"**{g['goal']}** = {g['value']} (goal ≤ {g['target']}, "
                                                      f"{g['factor']}× the goal)" for g in top) + ".\n")
    add(_comparison(doc))

    add("## Verify findings\n")
    add("Differences `verify` reported between the original and the slim image under its policy "
        "(the shipped output would fail `trimcage build`'s verification).\n")
    found = False
    for n, s in S.items():
        v = s.get("verify")
        if v and (v["differences"] or not v["attacks_total"]):
            found = True
            why = "; ".join(v["differences"]) or "equivalent"
            if not v["attacks_total"]:
                why += "; the attack battery returned no results"
            add(f"- **{n}**: {why}")
    add("" if found else "None.\n")

    add("## Failures\n")
    if not doc["errors"]:
        add("None: every stage ran on every sample.\n")
    else:
        add("| sample | stage | run | message |")
        add("|---|---|---|---|")
        for e in doc["errors"]:
            add(f"| {e['sample']} | {e['stage']} | {e['run']} | {str(e['message']).replace('|', '/')} |")
        add("")
    return "\n".join(L) + "\n"


def _comparison(doc: dict[str, Any]) -> str:
    S = doc["samples"]
    ng = S.get("nginx") or {}
    y = ng.get("syscalls") or {}
    total = doc["docker_default"]["total"]
    L = ["## Comparison with published numbers\n",
         "From `src/trimcage/data/README.md`; other tools, other images and machines, so only orders of magnitude "
         "compare.\n"]
    cold = [s["times"]["analyze_cold"]["median_s"] + (s["times"].get("prepare_cold") or {}).get("median_s", 0)
            for s in S.values() if (s.get("times") or {}).get("analyze_cold")]
    builds = [s["times"]["build_combined"]["median_s"] for s in S.values()
              if (s.get("times") or {}).get("build_combined")]
    if cold or builds:
        import statistics
        L.append(f"- **Confine**: median 80 s per image. trimcage: median cold static analysis (incl. read and "
                 f"extract) {round(statistics.median(cold), 1) if cold else '–'} s, median warm-cache combined build "
                 f"{round(statistics.median(builds), 1) if builds else '–'} s over {len(S)} images.")
    filt = [total - s["syscalls"]["static_allowed"] for s in S.values() if "static_allowed" in (s.get("syscalls") or {})]
    if filt:
        L.append(f"- **Confine**: filters ≥145 of 326 syscalls for half of the images (nginx: 171 filtered). "
                 f"trimcage's static profile filters {min(filt)}–{max(filt)} of {total} "
                 f"(nginx: {total - y['static_allowed'] if 'static_allowed' in y else '–'}); combined "
                 f"nginx: {total - y['combined_allowed'] if 'combined_allowed' in y else '–'}.")
    L.append(f"- **sysfilter**: nginx allowed set 115. trimcage nginx: static {y.get('static_allowed', '–')}, "
             f"combined {y.get('combined_allowed', '–')}, dynamic {y.get('dynamic_allowed', '–')} "
             f"(observed {y.get('observed', '–')}).")
    ratios = [(n, s["size"]["original"]["bytes"] / s["size"]["slim_combined"]["bytes"]) for n, s in S.items()
              if "slim_combined" in (s.get("size") or {}) and s["size"]["slim_combined"]["bytes"]]
    if ratios:
        best = max(ratios, key=lambda r: r[1])
        L.append(f"- **DockerSlim**: up to 30x smaller; profile = observed + 32 extras, no argument rules. "
                 f"trimcage combined: {min(r for _, r in ratios):.1f}x–{best[1]:.1f}x smaller (best: {best[0]}); "
                 f"nginx combined profile = observed {y.get('observed', '–')} + "
                 f"{(y['combined_allowed'] - y['observed']) if 'combined_allowed' in y and 'observed' in y else '–'} "
                 f"extras, with argument rules on {', '.join(ng.get('argument_rules') or []) or 'none'}.")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    print(render(json.loads(open(sys.argv[1]).read())), end="")
