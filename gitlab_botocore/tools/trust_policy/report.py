"""What a trust-policy check reports: findings by severity, and the verdict."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["FAILING", "Finding", "Severity", "TrustPolicyReport"]

Severity = Literal["error", "security", "warning", "note"]
# A finding of these severities makes ``trust-policy --check`` exit 1; a note does not.
FAILING: tuple[Severity, ...] = ("error", "security", "warning")
_RANK = {"error": 0, "security": 1, "warning": 2, "note": 3}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing worth knowing about a trust policy.

    ``error``: keeps this token out, or can never work. ``security``: lets in jobs or
    identities the policy evidently does not mean (another project, a look-alike branch,
    another identity provider, any AWS account). ``warning``: lets in more than it needs to,
    or leaves out a check (no ``aud`` condition, every project of a group). ``note``: worth
    knowing, nothing to fix (every branch of one project, a condition assumed to hold).
    """

    severity: Severity
    message: str


@dataclasses.dataclass
class TrustPolicyReport:
    """Whether a trust policy admits a token, and why (not), and whom else it admits."""

    admits: bool
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def of_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def passed(self) -> bool:
        """Admits this token, with no error, security or warning finding."""
        return self.admits and not any(f.severity in FAILING for f in self.findings)

    def text(self) -> str:
        """A human-readable summary, one finding per line."""
        verdict = "admits" if self.admits else "does not admit"
        head = f"The trust policy {verdict} this token."
        return "\n".join([head, *(f"{f.severity.upper()}: {f.message}" for f in self.findings)])


def _label(statement: Mapping[str, Any], number: int) -> str:
    sid = statement.get("Sid")
    return f"Statement {number}" + (f" ({sid})" if sid else "")


def _show(value: object) -> str:
    return json.dumps(value if not isinstance(value, tuple) else list(value))
