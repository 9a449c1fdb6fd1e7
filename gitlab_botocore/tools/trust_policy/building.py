"""Build the trust policy for a project and its refs, or for the job holding a token.

Only conditions AWS can check are written: ``aud`` and ``sub`` (see the package doc); a
request for anything else raises :class:`UnenforceableConditionError` with what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitlab_botocore.explanations import sub_components

from .naming import (
    ACTION,
    POLICY_VERSION,
    _host_of,
    has_wildcard,
    provider_arn_for,
    subject_pattern,
)
from .sub_patterns import _sub_probes

__all__ = ["UnenforceableConditionError", "build_trust_policy", "policy_for_token"]


class UnenforceableConditionError(ValueError):
    """A condition was asked for that AWS cannot check for a GitLab token."""


def build_trust_policy(
    *,
    provider_arn: str,
    audience: str | list[str],
    subjects: list[str],
    protected_only: bool = False,
    environment: str | None = None,
) -> dict[str, Any]:
    """A trust policy admitting tokens of this provider with this audience and a listed ``sub``.

    Exact subjects are compared with ``StringEquals``, subjects with ``*`` or ``?`` with
    ``StringLike``. The conditions of one statement must all hold, so a mix of both gets one
    statement each. ``protected_only`` and ``environment`` raise
    :class:`UnenforceableConditionError`: AWS does not show those claims to trust policies.
    """
    _refuse_unenforceable(protected_only=protected_only, environment=environment)
    host = _host_of(provider_arn)
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not audiences or not all(audiences):
        raise ValueError("audience must be a non-empty string or list of strings")
    wanted = list(dict.fromkeys(subjects))
    if not wanted or not all(wanted):
        raise ValueError("subjects must list at least one non-empty sub value or pattern")
    aud_value: str | list[str] = audience if isinstance(audience, str) else audiences
    exact = [s for s in wanted if not has_wildcard(s)]
    patterns = [s for s in wanted if has_wildcard(s)]
    statements: list[dict[str, Any]] = []
    if exact:
        conditions = {"StringEquals": {f"{host}:aud": aud_value, f"{host}:sub": exact}}
        statements.append(_statement(provider_arn, conditions))
    if patterns:
        conditions = {
            "StringEquals": {f"{host}:aud": aud_value},
            "StringLike": {f"{host}:sub": patterns},
        }
        statements.append(_statement(provider_arn, conditions))
    return {"Version": POLICY_VERSION, "Statement": statements}


def _statement(provider_arn: str, conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": ACTION,
        "Condition": conditions,
    }


def _refuse_unenforceable(*, protected_only: bool, environment: str | None) -> None:
    if protected_only:
        raise UnenforceableConditionError(
            "AWS cannot restrict a role to protected refs: STS shows a trust policy only the "
            "'sub' and 'aud' claims of a GitLab token, so a condition on 'ref_protected' never "
            "holds. Name the protected branches or tags in the ref pattern instead (for "
            "example ref 'main' or 'release/*'), and protect exactly those in GitLab."
        )
    if environment is not None:
        raise UnenforceableConditionError(
            "AWS cannot restrict a role to a GitLab environment: STS shows a trust policy only "
            "the 'sub' and 'aud' claims of a GitLab token, so a condition on 'environment' "
            "never holds. Give each environment its own role, limited to the refs that deploy "
            "to it."
        )


def policy_for_token(
    token_claims: Mapping[str, Any],
    *,
    account_id: str,
    ref: str | None = None,
    ref_type: str | None = None,
    any_branch: bool = False,
    protected_only: bool = False,
    partition: str = "aws",
) -> dict[str, Any]:
    """The trust policy that admits this job's project on its ref (by default its exact ``sub``).

    ``ref``/``ref_type`` replace the token's ref (``ref`` may be a pattern such as
    ``release/*``); ``any_branch`` admits every branch of the project. The ``sub`` keeps the
    shape of the token's own (the project may customise it). Raises :class:`ValueError` for
    a pattern that would let in more than it says (``main*`` also admits ``main-evil``).
    """
    _refuse_unenforceable(protected_only=protected_only, environment=None)
    issuer = token_claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("the token has no 'iss' claim")
    audience = token_claims.get("aud")
    if isinstance(audience, list) and len(audience) == 1:
        audience = audience[0]
    if not audience or not isinstance(audience, (str, list)):
        raise ValueError("the token has no 'aud' claim")
    sub = token_claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ValueError("the token has no 'sub' claim")
    if any_branch:
        if ref_type not in (None, "branch") or ref not in (None, "*"):
            raise ValueError("any_branch admits every branch: leave ref and ref_type unset")
        ref_type, ref = "branch", "*"
    subject = sub
    if ref is not None or ref_type is not None:
        subject = _subject_with(sub, ref=ref, ref_type=ref_type)
        unsafe = [p for p in _sub_probes(subject, "StringLike", None) if p.severity == "security"]
        if unsafe:
            raise ValueError(
                f"the sub pattern {subject} would also let in {unsafe[0].text}, e.g. "
                f"{unsafe[0].sub}. Name the refs exactly, or end a prefix with a separator "
                "(release/*) and protect that pattern in GitLab."
            )
    return build_trust_policy(
        provider_arn=provider_arn_for(issuer, account_id, partition=partition),
        audience=audience,
        subjects=[subject],
    )


def _subject_with(sub: str, *, ref: str | None, ref_type: str | None) -> str:
    """The token's ``sub`` with another ref and/or ref type, in the token's own shape."""
    components = sub_components(sub)
    if components is None:
        raise ValueError(
            f"this token's sub ({sub}) has none of GitLab's sub shapes "
            "(ci_id_token_sub_claim_components): write the pattern for the refs you want by hand"
        )
    shape = ",".join(components)
    if ref_type is not None and "ref_type" not in components:
        raise ValueError(
            f"this project's sub has the components {shape} (ci_id_token_sub_claim_components), "
            "without ref_type: a trust policy cannot tell its branches from its tags. Name "
            "the refs exactly, or add ref_type to the project's sub components."
        )
    if ref not in (None, "*") and "ref" not in components:
        raise ValueError(
            f"this project's sub has the components {shape} (ci_id_token_sub_claim_components), "
            f"without ref: a trust policy admits every {components['ref_type']} of the project "
            f"and cannot single out {ref}. Add ref to the project's sub components."
        )
    wanted = {**components}
    if ref_type is not None:
        wanted["ref_type"] = ref_type
    if ref is not None and "ref" in wanted:
        wanted["ref"] = ref
    return subject_pattern(
        wanted["project_path"],
        ref_type=wanted.get("ref_type", "branch"),
        ref=wanted.get("ref", "*"),
        components=tuple(components),
    )
