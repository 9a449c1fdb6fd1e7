"""Names in a GitLab trust policy: the IAM OIDC provider's ARN and the ``sub`` patterns.

A ``sub`` has one of the shapes GitLab lets a project choose (:data:`SUB_SHAPES`); the
runtime's :mod:`gitlab_botocore.explanations` reads and writes them, this module adds the
checks a pattern must pass before a trust policy may use it.
"""

from __future__ import annotations

import re

from gitlab_botocore.explanations import (
    DEFAULT_SUB_SHAPE,
    SUB_SHAPES,
    format_sub,
    provider_host,
    sub_components,
)

__all__ = [
    "ACTION",
    "ASSUME_ROLE",
    "CONTEXT_CLAIMS",
    "POLICY_VERSION",
    "REF_TYPES",
    "SUB_SHAPES",
    "has_wildcard",
    "provider_arn_for",
    "provider_host",
    "sub_components",
    "subject_pattern",
]

ACTION = "sts:AssumeRoleWithWebIdentity"
ASSUME_ROLE = "sts:AssumeRole"
POLICY_VERSION = "2012-10-17"
# The only claims of a GitLab token that STS exposes as condition keys (see the package doc).
CONTEXT_CLAIMS = ("aud", "sub")
REF_TYPES = ("branch", "tag", "*")

_PROVIDER_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):oidc-provider/(?P<host>.+)"
)
_ACCOUNT_ID = re.compile(r"\d{12}")
_WILDCARDS = frozenset("*?")


def provider_arn_for(issuer: str, account_id: str, *, partition: str = "aws") -> str:
    """The ARN of the IAM OIDC provider for ``issuer`` in ``account_id``."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"account_id must be 12 digits, not {account_id!r}")
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{provider_host(issuer)}"


def _host_of(provider_arn: str) -> str:
    match = _PROVIDER_ARN.fullmatch(provider_arn)
    if match is None:
        raise ValueError(
            f"{provider_arn!r} is not the ARN of an IAM OIDC provider "
            "(arn:aws:iam::<account>:oidc-provider/<host>)"
        )
    return match["host"]


def has_wildcard(value: str) -> bool:
    """Whether ``StringLike`` would read ``value`` as a pattern."""
    return not _WILDCARDS.isdisjoint(value)


def subject_pattern(
    project_path: str,
    *,
    ref_type: str = "branch",
    ref: str = "*",
    components: tuple[str, ...] = DEFAULT_SUB_SHAPE,
) -> str:
    """The ``sub`` for a project (or ``group/*``) and a ref pattern, in one of GitLab's shapes.

    ``components`` is the project's ``ci_id_token_sub_claim_components`` (default
    ``project_path,ref_type,ref``); a component it leaves out is not written. The top-level
    group must be spelled out: on a shared instance anyone can create a group whose name
    matches ``my*``.
    """
    if components not in SUB_SHAPES:
        shapes = "; ".join(",".join(shape) for shape in SUB_SHAPES)
        raise ValueError(f"sub components must be one of {shapes}, not {','.join(components)}")
    if not project_path or any(c in project_path for c in ": \t\n"):
        raise ValueError(f"project path {project_path!r} must be non-empty without ':' or spaces")
    namespace, slash, rest = project_path.partition("/")
    if not slash or not rest or has_wildcard(namespace):
        raise ValueError(
            f"project path {project_path!r} must name its top-level group literally "
            "(mygroup/myproject or mygroup/*): anyone can create a group matching a pattern"
        )
    if ref_type not in REF_TYPES:
        raise ValueError(f"ref_type must be one of {', '.join(REF_TYPES)}, not {ref_type!r}")
    if not ref or any(c in ref for c in ": \t\n"):
        raise ValueError(f"ref {ref!r} must be non-empty without ':' or spaces")
    values = {"project_path": project_path, "ref_type": ref_type, "ref": ref}
    return format_sub({name: values[name] for name in components})
