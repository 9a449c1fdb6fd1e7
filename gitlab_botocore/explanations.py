"""Turning an STS refusal into an error a person can act on.

Each message says what happened, the likely cause for *this* token and role, and
what to change. It shows the role ARN and the token's claims (not secret), never
the token.
"""

from __future__ import annotations

import json

from .exceptions import (
    TROUBLESHOOTING_URL,
    AccessDeniedError,
    InvalidIdentityTokenError,
    STSError,
    STSRequestError,
    STSUnavailableError,
)
from .id_token import JOB_TIMEOUT_HINT, IdToken
from .settings import EnvVar, Settings

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "IDPRejectedClaim"})
TOKEN_CODES = frozenset({"InvalidIdentityToken", "ExpiredTokenException"})
REQUEST_CODES = frozenset(
    {
        "ValidationError",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "RegionDisabledException",
    }
)
VERIFICATION_KEY_PHRASE = "retrieve verification key"


def sts_refusal(
    code: str, message: str, token: IdToken, settings: Settings, attempts: int = 1
) -> STSError:
    """The exception for an STS error response, with its explanation."""
    headline = _headline(f"this job assume {settings.role_arn}", code, message, attempts)
    if code in ACCESS_DENIED_CODES:
        body, cls = _access_denied(token, settings), AccessDeniedError
    elif code in TOKEN_CODES:
        body, cls = _invalid_token(code, message, token, settings), InvalidIdentityTokenError
    elif code in REQUEST_CODES:
        body, cls = _bad_request(code, message, settings), STSRequestError
    else:
        body, cls = _unavailable(settings), (STSUnavailableError if attempts > 1 else STSError)
    text = "\n".join([headline, _claims(token), *body, f"See {TROUBLESHOOTING_URL}"])
    return cls(text, code=code, role_arn=settings.role_arn)


def _headline(what: str, code: str, message: str, attempts: int) -> str:
    text = f"AWS STS refused to let {what} ({code}: {message.strip() or 'no message'})."
    return text + (f" Gave up after {attempts} attempts." if attempts > 1 else "")


def chained_refusal(
    code: str, message: str, source_arn: str, role_arn: str, attempts: int = 1
) -> STSError:
    """The exception when assuming the next role of a chain (``AssumeRole``) fails."""
    text = _headline(f"{source_arn} assume the chained role {role_arn}", code, message, attempts)
    if code in ACCESS_DENIED_CODES:
        text += (
            f" The trust policy of {role_arn} must allow sts:AssumeRole for "
            f'{{"AWS": "{_role_of(source_arn)}"}}, and that role needs an identity policy '
            "allowing sts:AssumeRole on the chained role."
        )
        cls: type[STSError] = AccessDeniedError
    elif code in REQUEST_CODES:
        text += f" Check {EnvVar.CHAIN_ROLE_ARNS}; chained sessions last at most one hour."
        cls = STSRequestError
    else:
        cls = STSUnavailableError if attempts > 1 else STSError
    return cls(f"{text} See {TROUBLESHOOTING_URL}", code=code, role_arn=role_arn)


def _role_of(assumed_role_arn: str) -> str:
    """``arn:aws:sts::1:assumed-role/name/session`` -> ``arn:aws:iam::1:role/name``."""
    prefix, _, resource = assumed_role_arn.partition(":assumed-role/")
    if not resource:
        return assumed_role_arn
    return prefix.replace(":sts:", ":iam:") + ":role/" + resource.split("/")[0]


def sts_unreachable(
    reason: str, endpoint: str, settings: Settings, attempts: int
) -> STSUnavailableError:
    """The exception when STS could not be reached at all."""
    return STSUnavailableError(
        f"Could not reach AWS STS at {endpoint} to assume {settings.role_arn}: {reason} "
        f"(after {attempts} attempt{'s' if attempts != 1 else ''}). Check the job's network "
        f"access to AWS (proxy, firewall) and {EnvVar.ENDPOINT_URL_STS} / the region. "
        f"See {TROUBLESHOOTING_URL}",
        code=None,
        role_arn=settings.role_arn,
    )


def _claims(token: IdToken) -> str:
    return (
        f"The GitLab ID token (from {token.variable or 'the token source'}) has {token.describe()}."
    )


def _access_denied(token: IdToken, settings: Settings) -> list[str]:
    host = _provider_host(token.issuer)
    account = settings.role_arn.split(":")[4]
    sub = token.subject or ""
    aud = ", ".join(token.audience) or "(none)"
    lines = [
        "The role's trust policy does not admit this job. A condition that admits exactly "
        "this ref:",
        "  " + _condition("StringEquals", f"{host}:sub", sub),
    ]
    if ":ref:" in sub:
        every_ref = sub.rsplit(":ref:", 1)[0] + ":ref:*"
        lines += [
            "or every ref of this kind in this project (wildcards need StringLike):",
            "  " + _condition("StringLike", f"{host}:sub", every_ref),
        ]
    ref_type = token.claims.get("ref_type", "?")
    protected = token.claims.get("ref_protected", "?")
    lines += [
        "Common mistakes:",
        "  - a wildcard (*) under StringEquals: only StringLike expands wildcards;",
        f"  - an '{host}:aud' condition that differs from the 'aud:' under id_tokens: in "
        f".gitlab-ci.yml (this token: {aud});",
        f"  - no IAM OIDC identity provider for {host} in account {account}, the role's "
        "account (the Federated principal must name it);",
        f"  - a sub pattern for branches while this job runs on a {ref_type}, or the reverse;",
        f"  - conditions on other claims, such as {host}:ref_protected (this job: "
        f"{protected}): AWS evaluates only sub and aud for GitLab, so they never hold.",
    ]
    return lines


def _provider_host(issuer: str | None) -> str:
    # trust_policy belongs to the tools; importing it only when a refusal is explained
    # keeps it (about 2 ms) off the path of a job whose exchange succeeds.
    from .trust_policy import provider_host

    return provider_host(issuer)


def _condition(operator: str, key: str, value: str) -> str:
    return json.dumps({operator: {key: value}})[1:-1]


def _invalid_token(code: str, message: str, token: IdToken, settings: Settings) -> list[str]:
    lowered = message.lower()
    host = _provider_host(token.issuer)
    account = settings.role_arn.split(":")[4]
    if code == "ExpiredTokenException":
        return [
            f"The ID token expired at {token.expires_at:%Y-%m-%d %H:%M:%S} UTC. {JOB_TIMEOUT_HINT}"
        ]
    if VERIFICATION_KEY_PHRASE in lowered:
        return [
            f"AWS could not fetch the token's signing keys from {token.issuer}: "
            "/.well-known/openid-configuration and its jwks_uri must be reachable from the "
            "internet over HTTPS within a few seconds, with the certificate chain served in "
            "order (leaf, intermediate, root) and no extra certificates. For an instance AWS "
            "cannot reach, publish the discovery document and keys elsewhere (a public bucket) "
            "and set GitLab's custom issuer URL. Often transient: retries did not help this "
            "time.",
        ]
    if "audience" in lowered:
        return [
            f"The token's audience ({', '.join(token.audience) or 'none'}) is not an audience "
            f"(client ID) of the IAM OIDC provider for {host} in account {account}. Add it to "
            "the provider, or change 'aud:' under id_tokens: in .gitlab-ci.yml to one the "
            "provider lists.",
        ]
    if "provider" in lowered and ("not found" in lowered or "no openidconnect" in lowered):
        return [
            f"Account {account} has no IAM OIDC identity provider for {host}. Create one with "
            f"URL {token.issuer} and the token's audience, or check that the role is in the "
            "account you meant.",
        ]
    return [
        "AWS did not accept the token (for example a bad signature, or a token from "
        f"another GitLab instance than {host}). Pass the variable from id_tokens: unchanged."
    ]


def _bad_request(code: str, message: str, settings: Settings) -> list[str]:
    if code == "RegionDisabledException":
        return [
            f"STS is not activated in region {settings.region} for the role's account. "
            "Activate it in the IAM account settings, or use another region "
            f"({EnvVar.REGION} / AWS_DEFAULT_REGION).",
        ]
    if code == "PackedPolicyTooLarge":
        return [
            f"The session policies ({EnvVar.POLICY}, {EnvVar.POLICY_ARNS}) are too large once "
            "packed. Use fewer or shorter policies.",
        ]
    if code == "MalformedPolicyDocument":
        return [f"{EnvVar.POLICY} is not a valid IAM policy document. Check it with IAM's editor."]
    if "duration" in message.lower():
        return [
            f"{EnvVar.DURATION_SECONDS} ({settings.duration_seconds}) is above the role's "
            "maximum session duration. Lower it, or raise the role's MaxSessionDuration.",
        ]
    return ["STS rejected a parameter of the request; check the settings named above."]


def _unavailable(settings: Settings) -> list[str]:
    return [
        "STS is throttling or failing. Many parallel jobs of one account share STS quotas: "
        f"stagger them, or give retries more time with {EnvVar.RETRY_BUDGET_SECONDS} "
        f"(now {settings.retry_budget_seconds:g} s)."
    ]
