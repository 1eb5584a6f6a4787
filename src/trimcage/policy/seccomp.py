"""Seccomp profiles in Docker's JSON format: make, load, and Docker's default.

The format is the one of ``src/trimcage/data/docker-default-seccomp.json``
(moby/profiles): ``defaultAction``, ``defaultErrnoRet``, ``architectures``,
``syscalls`` = list of ``{"names": [...], "action": ..., "args": [...]}``.
An argument condition is ``{"index": i, "value": v, "valueTwo": w, "op": OP}``;
for ``SCMP_CMP_MASKED_EQ`` runc hands ``value`` to libseccomp as the *mask*
and ``valueTwo`` as the datum, so the rule matches when
``(arg & value) == valueTwo``.
"""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from trimcage.elf.syscalls_x86_64 import SYSCALLS_X86_64
from trimcage.policy.interface import PolicyError

X86_64 = "SCMP_ARCH_X86_64"
X86 = "SCMP_ARCH_X86"
X32 = "SCMP_ARCH_X32"

ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
           "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

# Syscalls the container runtime makes after it installed the filter and
# before the application's first instruction. runc (with no-new-privileges,
# which every trimcage policy sets) installs the filter "as close to execve as
# possible": after it, the Go runtime of ``runc init`` may still run a
# goroutine switch, GC or preemption signal (futex, nanosleep, sched_yield,
# rt_sig*, sigaltstack, tgkill/getpid/gettid, mmap/munmap/madvise,
# epoll_pwait), write the seccomp fd/sync byte to its parent (write, close,
# fcntl), mark its inherited descriptors close-on-exec by listing
# /proc/self/fd (openat, getdents64, fstatfs to check it is procfs,
# newfstatat) and then calls execve. Measured with runc 1.1 under Podman: a
# profile without openat/getdents64/fstatfs fails to start.
# bubblewrap applies ``--seccomp`` right before
# execvp. crun calls close_range before execve. exit/exit_group let a failed
# exec report its error.
RUNTIME_SYSCALLS: tuple[str, ...] = (
    "close", "close_range", "epoll_pwait", "execve", "exit", "exit_group", "fcntl", "fstatfs",
    "futex", "getdents64", "getpid", "gettid", "madvise", "mmap", "munmap", "nanosleep",
    "newfstatat", "openat", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_yield",
    "sigaltstack", "tgkill", "write",
)

CSIGNAL = 0xFF  # clone: the low byte is the exit signal, not a flag
SOCK_TYPE_MASK = 0xF  # socket: the low nibble is the type, the rest are flags
# (syscall, argument index) whose value is a set of flag bits: restricted by
# a MASKED_EQ rule that denies bits never seen instead of exact values.
FLAG_ARGUMENTS = {("clone", "0"), ("unshare", "0"), ("socket", "1")}
MAX_RULES_PER_SYSCALL = 256
#: chmod family: (syscall, mode argument). Setting S_ISUID/S_ISGID is denied by a
#: MASKED_EQ rule unless the arguments name such a mode: a slim image has no setuid file
#: and must not be able to make one.
MODE_ARGUMENTS = {"chmod": "1", "fchmod": "1", "fchmodat": "2"}
SETID_BITS = 0o6000


# --- the x86-64 syscall table -------------------------------------------------


@lru_cache(maxsize=1)
def syscall_table() -> dict[str, int]:
    """The x86-64 syscall names and numbers (Linux 6.1 UAPI, 362 entries): the elf stage's table."""
    return {name: nr for nr, name in sorted(SYSCALLS_X86_64.items())}


def all_syscalls() -> frozenset[str]:
    """All x86-64 syscall names (362)."""
    return frozenset(syscall_table())


# --- making a profile ---------------------------------------------------------


def _flag_condition(name: str, index: str, values: Iterable[int]) -> list[dict[str, Any]]:
    """MASKED_EQ conditions that deny every flag bit never seen for ``name``'s ``index``.

    ``clone``/``unshare``: one condition, ``(arg & ~(union | CSIGNAL)) == 0``.
    ``socket`` type: one condition per observed base type ``t``,
    ``(arg & ~flag_union) == t`` where the flag union leaves out the type
    nibble, so ``SOCK_STREAM|SOCK_NONBLOCK`` may not turn into ``SOCK_RAW``.
    Masks are 32-bit: these arguments are ints and the kernel ignores the
    upper half of clone's flags.
    """
    vals = sorted({v & U32 for v in values})
    if name == "socket":
        flags = 0
        for v in vals:
            flags |= v & ~SOCK_TYPE_MASK
        mask = U32 & ~flags
        bases = sorted({v & SOCK_TYPE_MASK for v in vals})
        return [{"index": int(index), "value": mask, "valueTwo": b, "op": "SCMP_CMP_MASKED_EQ"}
                for b in bases]
    union = 0
    for v in vals:
        union |= v
    if name == "clone":
        union |= CSIGNAL
    return [{"index": int(index), "value": U32 & ~union, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]


def _rules_for(name: str, args: Mapping[str, Iterable[int]]) -> list[dict[str, Any]] | None:
    """The ALLOW rules of a restricted syscall, or None when it must stay unrestricted.

    Each restricted argument gives a list of alternative conditions; the rules
    are their cartesian product (conditions in a rule are ANDed, rules ORed).
    When the product exceeds ``MAX_RULES_PER_SYSCALL`` the argument with the
    most alternatives is dropped until it fits.
    """
    alternatives: list[list[dict[str, Any]]] = []
    for index in sorted(args, key=lambda i: int(i)):
        try:
            values = [int(v) & U64 for v in args[index]]  # negative ints: as the register holds them
        except (TypeError, ValueError) as e:
            raise PolicyError(f"seccomp: argument {index} of {name}: values must be integers") from e
        if MODE_ARGUMENTS.get(name) == index and not any(v & SETID_BITS for v in values):
            alternatives.append([{"index": int(index), "value": SETID_BITS, "valueTwo": 0,
                                  "op": "SCMP_CMP_MASKED_EQ"}])
            continue
        if not values:
            continue
        if (name, index) in FLAG_ARGUMENTS:
            alternatives.append(_flag_condition(name, index, values))
        else:
            alternatives.append([{"index": int(index), "value": v, "op": "SCMP_CMP_EQ"}
                                 for v in sorted(set(values))])
    while alternatives:
        n = 1
        for alt in alternatives:
            n *= len(alt)
        if n <= MAX_RULES_PER_SYSCALL:
            break
        alternatives.remove(max(alternatives, key=len))
    if not alternatives:
        return None
    return [{"names": [name], "action": "SCMP_ACT_ALLOW", "args": list(combo)}
            for combo in itertools.product(*alternatives)]


def _check_index(name: str, index: str) -> None:
    if not (isinstance(index, str) and index.isdigit() and 0 <= int(index) <= 5):
        raise PolicyError(f"seccomp: argument index {index!r} of {name} is not 0..5")


def make_seccomp(syscalls: Iterable[str], arguments: Mapping[str, Mapping[str, Iterable[int]]]
                 | None = None, *, needs_32bit: bool = False,
                 runtime_syscalls: Iterable[str] = RUNTIME_SYSCALLS) -> dict[str, Any]:
    """Return an allow-list profile in Docker's format.

    Everything not listed fails with EPERM (``SCMP_ACT_ERRNO``, errno 1).
    ``architectures`` is x86-64 only unless ``needs_32bit`` (then also i386;
    x32 never). Unrestricted syscalls (``syscalls`` ∪ ``runtime_syscalls``
    minus restricted ones) go in one sorted ``names`` rule first; each syscall
    in ``arguments`` gets its own rules (see :func:`_rules_for`); a runtime
    syscall is never restricted. Names unknown on x86-64 raise PolicyError
    unless ``needs_32bit`` (i386-only names are then allowed through).
    Same input gives an equal dict with the same ordering.
    """
    arguments = arguments or {}
    runtime = set(runtime_syscalls)
    wanted = set(syscalls) | runtime
    if not all(isinstance(n, str) for n in wanted) or not isinstance(arguments, Mapping):
        raise PolicyError("seccomp: syscall names must be strings and arguments a mapping")
    known = all_syscalls()
    unknown = sorted(n for n in wanted if n not in known)
    if unknown and not needs_32bit:
        raise PolicyError(f"seccomp: not x86-64 syscalls: {', '.join(unknown[:10])}")
    restricted: list[dict[str, Any]] = []
    restricted_names: set[str] = set()
    arguments = dict(arguments)
    for name, index in MODE_ARGUMENTS.items():
        if name in wanted and name not in arguments:
            arguments[name] = {index: ()}  # placeholder: no setid bits (see _rules_for)
    for name in sorted(arguments):
        if name not in wanted or name in runtime:
            continue
        args = arguments[name]
        if not isinstance(args, Mapping):
            raise PolicyError(f"seccomp: arguments of {name} must map an index to values")
        for index in args:
            _check_index(name, index)
        rules = _rules_for(name, args)
        if rules is not None:
            restricted.extend(rules)
            restricted_names.add(name)
    free = sorted(wanted - restricted_names)
    rules_out: list[dict[str, Any]] = []
    if free:
        rules_out.append({"names": free, "action": "SCMP_ACT_ALLOW"})
    rules_out.extend(restricted)
    archs = [X86_64, X86] if needs_32bit else [X86_64]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": archs,
            "syscalls": rules_out}


def profile_allowed(profile: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Return (allowed, argument-restricted) syscall names of a validated profile.

    Only meaningful for a default-deny profile: a syscall is allowed when some
    ALLOW rule names it; it is argument-restricted when every ALLOW rule naming
    it carries ``args``. Rules with ``includes``/``excludes`` are evaluated
    with :func:`rule_applies` for x86-64 and no capabilities.
    """
    allowed: set[str] = set()
    free: set[str] = set()
    for rule in profile.get("syscalls") or []:
        if rule.get("action") != "SCMP_ACT_ALLOW" or not rule_applies(rule, frozenset()):
            continue
        names = set(rule.get("names") or [])
        allowed |= names
        if not rule.get("args"):
            free |= names
    return frozenset(allowed), frozenset(allowed - free)


# --- loading a user-supplied profile --------------------------------------------


def _fail(path: str, msg: str) -> PolicyError:
    return PolicyError(f"seccomp profile {path}: {msg}")


def validate_profile(obj: Any, path: str = "<profile>") -> dict[str, Any]:
    """Check that ``obj`` is a Docker seccomp profile; return it.

    Raise PolicyError (one line naming ``path``) on wrong types, unknown
    actions/operators/architectures, argument indices outside 0..5 or values
    that are not unsigned 64-bit integers.
    """
    if not isinstance(obj, dict):
        raise _fail(path, "not a JSON object")
    if obj.get("defaultAction") not in ACTIONS:
        raise _fail(path, f"defaultAction {obj.get('defaultAction')!r} is not a seccomp action")
    ret = obj.get("defaultErrnoRet", 1)
    if not isinstance(ret, int) or isinstance(ret, bool) or not 0 <= ret < 4096:
        raise _fail(path, "defaultErrnoRet must be an integer errno")
    archs = obj.get("architectures", [])
    if not isinstance(archs, list) or not all(isinstance(a, str) and a.startswith("SCMP_ARCH_")
                                              for a in archs):
        raise _fail(path, "architectures must be a list of SCMP_ARCH_* names")
    rules = obj.get("syscalls", [])
    if not isinstance(rules, list):
        raise _fail(path, "syscalls must be a list")
    for i, rule in enumerate(rules):
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise _fail(path, f"{where} is not an object")
        names = rule.get("names", [rule["name"]] if "name" in rule else None)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n
                                                                 for n in names):
            raise _fail(path, f"{where}.names must be a non-empty list of strings")
        if rule.get("action") not in ACTIONS:
            raise _fail(path, f"{where}.action {rule.get('action')!r} is not a seccomp action")
        args = rule.get("args") or []
        if not isinstance(args, list):
            raise _fail(path, f"{where}.args must be a list")
        for j, a in enumerate(args):
            if not isinstance(a, dict):
                raise _fail(path, f"{where}.args[{j}] is not an object")
            idx = a.get("index")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx <= 5:
                raise _fail(path, f"{where}.args[{j}].index must be 0..5")
            for key in ("value", "valueTwo"):
                v = a.get(key, 0)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= U64:
                    raise _fail(path, f"{where}.args[{j}].{key} must be an unsigned 64-bit integer")
            if a.get("op") not in OPS:
                raise _fail(path, f"{where}.args[{j}].op {a.get('op')!r} is not a comparison")
        for key in ("includes", "excludes"):
            if key in rule and not isinstance(rule[key], (dict, type(None))):
                raise _fail(path, f"{where}.{key} must be an object")
    return obj


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read and validate a user-supplied profile; PolicyError (one line) if unusable."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(16 << 20)
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from e
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(path, f"not JSON ({e})") from e
    return validate_profile(obj, path)


# --- Docker's default profile -------------------------------------------------

# moby oci/caps/defaults.go: the capabilities of a default `docker run`.
DOCKER_DEFAULT_CAPS = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
})
DEFAULT_CAPS = DOCKER_DEFAULT_CAPS


@lru_cache(maxsize=1)
def docker_default_profile() -> dict[str, Any]:
    """Docker's default profile as shipped in ``trimcage/data`` (validated)."""
    text = resources.files("trimcage").joinpath("data/docker-default-seccomp.json").read_bytes()
    return validate_profile(json.loads(text), "data/docker-default-seccomp.json")


def _kernel_at_least(spec: str, kernel: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in spec.split(".")[:2])
    except ValueError:
        return False
    return kernel >= (major, minor)


def rule_applies(rule: Mapping[str, Any], caps: frozenset[str] | set[str], *, arch: str = "amd64",
                 kernel: tuple[int, int] = (6, 1)) -> bool:
    """Moby's evaluation of a rule's ``excludes``/``includes`` (profiles/seccomp).

    Excluded when ``arch`` is in ``excludes.arches``, any of
    ``excludes.caps`` is held, or the kernel is at least ``excludes.minKernel``;
    included only when ``arch`` is in ``includes.arches`` (if given), *all*
    ``includes.caps`` are held and the kernel is at least
    ``includes.minKernel``.
    """
    exc = rule.get("excludes") or {}
    inc = rule.get("includes") or {}
    if arch in (exc.get("arches") or []):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and _kernel_at_least(exc["minKernel"], kernel):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], kernel):
        return False
    return True


def docker_default_rules(caps: Iterable[str] = DEFAULT_CAPS) -> list[dict[str, Any]]:
    """The rules of Docker's default profile that apply on x86-64 with ``caps``."""
    caps = frozenset(caps)
    return [r for r in docker_default_profile()["syscalls"] if rule_applies(r, caps)]


def docker_default_allowed(caps: Iterable[str] = DEFAULT_CAPS) -> set[str]:
    """x86-64 syscalls Docker's default profile allows (some only with argument rules).

    A syscall counts when an applicable ALLOW rule names it; names that are
    not x86-64 syscalls (i386-only, other architectures, newer kernels than
    the table) are left out.
    """
    known = all_syscalls()
    out: set[str] = set()
    for r in docker_default_rules(caps):
        if r["action"] == "SCMP_ACT_ALLOW":
            out.update(n for n in r["names"] if n in known)
    return out


def docker_default_restricted(caps: Iterable[str] = DEFAULT_CAPS) -> set[str]:
    """Syscalls Docker's default profile allows only under argument rules (clone, socket...)."""
    free: set[str] = set()
    for r in docker_default_rules(caps):
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args"):
            free.update(r["names"])
    return docker_default_allowed(caps) - free
