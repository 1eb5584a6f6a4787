"""The verify stage's contract: is the slim image equivalent, and are attacks blocked?

``verify`` runs the original and the slim image with the same probes (the
slim one under its policy), compares what each run showed, then runs the
attack battery inside the slim image under the same policy. Exit code 0 when
equivalent and every attack is blocked, 3 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError


class VerifyError(TrimcageError):
    """Verification could not run at all (bad input, runtime failure): exit 2."""


@dataclass(frozen=True)
class RunObservation:
    """What one run of an image showed.

    ``probes`` are ``ProbeResult.to_json()`` dicts in probe order; ``alive``
    whether the main process was still running when the probes finished;
    ``exit_code`` its exit code if it had exited; ``log`` the tail of its
    stdout+stderr (text); ``error`` a one-line reason when the run failed
    before any probe (e.g. the entrypoint is missing).
    """

    probes: tuple[Mapping[str, Any], ...]
    alive: bool
    exit_code: int | None
    log: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"probes": list(self.probes), "alive": self.alive, "exit_code": self.exit_code,
                "error": self.error, "log_tail": self.log[-4000:]}


@dataclass(frozen=True)
class Difference:
    """One way the slim run differs from the original (``what`` and a one-line ``detail``)."""

    what: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "detail": self.detail}


@dataclass(frozen=True)
class VerifyResult:
    """The verdict: ``equivalent``, ``attacks`` (``AttackResult.to_json()`` dicts),
    ``missing_files`` named by the slim run, and both observations."""

    equivalent: bool
    differences: tuple[Difference, ...]
    attacks: tuple[Mapping[str, Any], ...]
    missing_files: tuple[str, ...]
    original: RunObservation
    slim: RunObservation
    runtime: str = "embedded"
    timings: Mapping[str, float] = field(default_factory=dict)
    skipped_attacks: tuple[str, ...] = ()
    """Exec attacks not run because their program is the application's own entrypoint."""

    @property
    def attacks_blocked(self) -> bool:
        return all(a.get("blocked") for a in self.attacks)

    @property
    def ok(self) -> bool:
        return self.equivalent and self.attacks_blocked

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 3

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "equivalent": self.equivalent, "attacks_blocked": self.attacks_blocked,
                "differences": [d.to_json() for d in self.differences], "attacks": list(self.attacks),
                "missing_files": list(self.missing_files), "original": self.original.to_json(),
                "slim": self.slim.to_json(), "runtime": self.runtime, "timings": dict(self.timings),
                "skipped_attacks": list(self.skipped_attacks)}
