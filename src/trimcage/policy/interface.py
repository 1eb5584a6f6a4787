"""The policy stage's contract: what it is told, and the lock-down it hands on.

The policy stage turns what the earlier stages found (syscalls used, argument
values known at every call site, privileged operations seen in the trace,
paths written) into a :class:`Policy`: a Docker/OCI seccomp profile, the
minimal capability set, no-new-privileges, a read-only root when the
application writes nowhere outside its tmpfs and volumes, and the user to run
as. To stay decoupled it takes plain values (:class:`PolicyInputs`), not the
earlier stages' dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError

MODES = ("combined", "static", "dynamic")


class PolicyError(TrimcageError):
    """A policy cannot be made or a user-supplied profile is invalid (names the file)."""


@dataclass(frozen=True)
class PolicyInputs:
    """Everything the policy is computed from.

    ``syscalls``: x86-64 syscall names the application may call.
    ``arguments``: syscall -> argument index (as a string, ``"0"``..``"5"``) ->
    the values seen; only arguments whose value is known at *every* call site
    are listed, so an absent argument is unrestricted.
    ``privileged_ops``: from the trace, e.g. ``{"op": "bind", "port": 80,
    "capability": "CAP_NET_BIND_SERVICE"}``; ``capability`` may be absent, then
    it is derived from ``op`` (see :mod:`trimcage.policy.capabilities`).
    ``writes``: paths written outside the tmpfs mounts (``/tmp``, ``/run``) and
    the volumes; empty means the root file system can be read-only.
    ``volumes``: in-image paths mounted as volumes. ``user``: ``uid:gid`` the
    application runs as. ``needs_32bit``: keep the i386 ABI. ``mode``: which
    analysis the syscall set came from (``combined``/``static``/``dynamic``).
    """

    syscalls: frozenset[str]
    arguments: Mapping[str, Mapping[str, tuple[int, ...]]] = field(default_factory=dict)
    privileged_ops: tuple[Mapping[str, Any], ...] = ()
    writes: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    user: str = "0:0"
    needs_32bit: bool = False
    mode: str = "combined"


@dataclass(frozen=True)
class Policy:
    """The lock-down of one image.

    ``seccomp`` is a Docker/OCI seccomp profile (the JSON object Docker's
    ``--security-opt seccomp=FILE`` reads), deterministic for equal inputs.
    ``capabilities`` are the sorted ``CAP_*`` names to add after dropping all;
    ``rationale`` maps each of them to why it is needed. ``run_as`` is
    ``uid:gid``. ``no_new_privileges`` is always True.
    """

    seccomp: Mapping[str, Any]
    capabilities: tuple[str, ...]
    read_only_rootfs: bool
    run_as: str
    no_new_privileges: bool = True
    rationale: Mapping[str, str] = field(default_factory=dict)
    mode: str = "combined"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with stable keys (``policy.json``)."""
        return {
            "capabilities": list(self.capabilities),
            "capability_rationale": dict(sorted(self.rationale.items())),
            "mode": self.mode,
            "no_new_privileges": self.no_new_privileges,
            "read_only_rootfs": self.read_only_rootfs,
            "run_as": self.run_as,
            "seccomp": self.seccomp,
        }
