"""Turning an STS refusal into an error a person can act on.

Each message says what happened, the likely cause for *this* token and role, and
what to change. It shows the role ARN and the token's claims (not secret), never
the token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    SSLError,
)

from .exceptions import (
    TROUBLESHOOTING_URL,
    AccessDeniedError,
    InvalidIdentityTokenError,
    STSError,
    STSRequestError,
    STSUnavailableError,
)
from .id_token import JOB_TIMEOUT_HINT, IdToken
from .redaction import redact
from .settings import EnvVar, Settings
from .token_source import aws_audiences

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

# The components a project may choose for its ID tokens' sub (ci_id_token_sub_claim_components),
# in the order GitLab writes them; the first is the default.
SUB_SHAPES: tuple[tuple[str, ...], ...] = (
    ("project_path", "ref_type", "ref"),
    ("project_path", "ref", "ref_type"),
    ("project_path", "ref"),
    ("project_path", "ref_type"),
)
DEFAULT_SUB_SHAPE = SUB_SHAPES[0]


def provider_host(issuer: str | None) -> str:
    """The IAM OIDC provider's name for an issuer: its URL without the scheme.

    It is also the prefix of the condition keys (``<host>:sub``) STS sets for the token.
    """
    if not issuer:
        return "<issuer>"
    parts = urlsplit(issuer)
    return (parts.netloc + parts.path).rstrip("/") or issuer


def sub_components(sub: str) -> dict[str, str] | None:
    """``project_path:g/p:ref_type:branch:ref:main`` -> its components, in their order.

    ``None`` unless ``sub`` has one of GitLab's four shapes (:data:`SUB_SHAPES`). Neither a
    project path nor a Git ref can hold ``:``, so splitting on it is exact for a real token;
    a pattern parses too as long as its wildcards stay inside one value.
    """
    parts = sub.split(":")
    if len(parts) % 2:
        return None
    names, values = tuple(parts[0::2]), parts[1::2]
    if names not in SUB_SHAPES or not all(values):
        return None
    return dict(zip(names, values))


def format_sub(components: Mapping[str, str]) -> str:
    """The ``sub`` for components in their order (the inverse of :func:`sub_components`)."""
    return ":".join(f"{name}:{value}" for name, value in components.items())


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


class UnexpectedReplyError(STSRequestError):
    """The answer to an STS request was not an STS answer, or carried unusable credentials.

    Raised inside the exchange and turned by :func:`sts_unreachable` into an error that
    names the endpoint; ``transient`` says whether asking again may help.
    """

    def __init__(self, problem: str, *, transient: bool = False, hint: str | None = None) -> None:
        super().__init__(f"AWS STS answered {problem}.")
        self.problem = problem
        self.transient = transient
        self.hint = hint


def sts_unreachable(
    problem: Exception, endpoint: str, settings: Settings, attempts: int
) -> STSError:
    """The exception when STS could not be reached, or what answered was not STS.

    ``problem`` is botocore's connection error or an :class:`UnexpectedReplyError`.
    """
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(problem, UnexpectedReplyError):
        cls: type[STSError] = STSUnavailableError if problem.transient else STSRequestError
        hint = problem.hint or _endpoint_hint(settings, problem.transient)
        text = (
            f"AWS STS at {endpoint} answered the request for {settings.role_arn} with "
            f"{problem.problem} ({tries}). {hint}"
        )
        return cls(f"{text} See {TROUBLESHOOTING_URL}", code=None, role_arn=settings.role_arn)
    if isinstance(problem, SSLError):
        hint = TLS_HINT
    elif isinstance(problem, ProxyConnectionError):
        hint = (
            "The proxy refused or dropped the connection: check HTTPS_PROXY / HTTP_PROXY and "
            "NO_PROXY in the job's environment."
        )
    elif isinstance(problem, (EndpointConnectionError, ConnectTimeoutError)):
        hint = (
            "The host name must resolve and accept HTTPS connections from the job: check "
            f"{EnvVar.ENDPOINT_URL_STS} and the region ({EnvVar.REGION}, AWS_DEFAULT_REGION), "
            "then the job's network access to AWS (proxy: HTTPS_PROXY / NO_PROXY; firewall)."
        )
    else:
        hint = (
            "Check the job's network access to AWS (proxy, firewall) and "
            f"{EnvVar.ENDPOINT_URL_STS} / the region."
        )
    return STSUnavailableError(
        f"Could not reach AWS STS at {endpoint} to assume {settings.role_arn}: "
        f"{redact(str(problem))} ({tries}). {hint} See {TROUBLESHOOTING_URL}",
        code=None,
        role_arn=settings.role_arn,
    )


TLS_HINT = (
    "The server's TLS certificate was not trusted, so the request was not retried. botocore "
    "trusts the CA bundle named by AWS_CA_BUNDLE (or ca_bundle in the AWS config profile), "
    "else the one in REQUESTS_CA_BUNDLE, else its own (certifi); it ignores SSL_CERT_FILE and "
    "the system store. Behind a proxy that intercepts TLS, point AWS_CA_BUNDLE at a PEM file "
    f"with the proxy's CA certificate; also check that {EnvVar.ENDPOINT_URL_STS} names the host "
    "in the certificate."
)


def _endpoint_hint(settings: Settings, transient: bool) -> str:
    if transient:
        return (
            "A proxy or load balancer in front of STS seems to be failing; retries did not help "
            f"within {EnvVar.RETRY_BUDGET_SECONDS} ({settings.retry_budget_seconds:g} s)."
        )
    return (
        "Something other than AWS STS may have answered: check "
        f"{EnvVar.ENDPOINT_URL_STS} and the region ({EnvVar.REGION}, AWS_DEFAULT_REGION), and "
        "any proxy between the job and AWS (HTTPS_PROXY, NO_PROXY)."
    )


def _claims(token: IdToken) -> str:
    return (
        f"The GitLab ID token (from {token.variable or 'the token source'}) has {token.describe()}."
    )


def _role_parts(role_arn: str) -> tuple[str, str, str]:
    """``arn:aws-us-gov:iam::123456789012:role/ci/deploy`` -> (partition, account, name)."""
    fields = role_arn.split(":", 5)
    if len(fields) < 6:
        return "aws", "<account>", role_arn
    return fields[1], fields[4], fields[5].rpartition("/")[2]


def _access_denied(token: IdToken, settings: Settings) -> list[str]:
    host = provider_host(token.issuer)
    partition, account, name = _role_parts(settings.role_arn)
    provider_arn = f"arn:{partition}:iam::{account}:oidc-provider/{host}"
    sub = token.subject or ""
    aud = ", ".join(token.audience) or "(none)"
    components = sub_components(sub)
    # STS says AccessDenied, not NoSuchEntity, for a role it cannot find: rule that out first.
    lines = [
        f"First check the role itself: STS gives this same answer when {settings.role_arn} "
        f"does not exist, or exists in another account than {account}. The role must be in "
        f"account {account}; the token was issued by {token.issuer or '<no issuer>'}, so "
        f"account {account} must also have the IAM OIDC identity provider {provider_arn}, "
        "and the trust policy must name it as its Federated principal. (From that account: "
        f"aws iam get-role --role-name {name}.)",
        "If the role is there, its trust policy does not admit this job. A condition that "
        "admits exactly this job's sub:",
        "  " + _condition("StringEquals", f"{host}:sub", sub),
    ]
    lines += _broader_sub(components, host)
    lines.append("Common mistakes:")
    lines += [
        "  - a wildcard (*) under StringEquals: only StringLike expands wildcards;",
        f"  - an '{host}:aud' condition that differs from the 'aud:' under id_tokens: in "
        f".gitlab-ci.yml (this token: {aud});",
    ]
    if components is None:
        lines.append(
            "  - sub conditions written for GitLab's shape (project_path:<group>/<project>:"
            "ref_type:<type>:ref:<name>), while this token's sub has another form: write "
            "them for the sub shown above;"
        )
    else:
        lines += _shape_mistakes(components, token.claims)
    protected = token.claims.get("ref_protected", "?")
    lines.append(
        f"  - conditions on other claims, such as {host}:ref_protected (this job: "
        f"{protected}): AWS evaluates only sub and aud for GitLab, so they never hold."
    )
    return lines


def _broader_sub(components: dict[str, str] | None, host: str) -> list[str]:
    """A ``StringLike`` condition for every ref of this kind, in the token's own sub shape."""
    if components is None:
        return []
    if "ref" not in components:
        return [
            f"(this project's sub has no ref: that condition admits every "
            f"{components['ref_type']} of the project.)"
        ]
    kind = f"every {components['ref_type']}" if "ref_type" in components else "every ref"
    every_ref = format_sub({**components, "ref": "*"})
    return [
        f"or {kind} of this project (wildcards need StringLike):",
        "  " + _condition("StringLike", f"{host}:sub", every_ref),
    ]


def _shape_mistakes(components: dict[str, str], claims: Mapping[str, object]) -> list[str]:
    names = tuple(components)
    ref_type = components.get("ref_type") or str(claims.get("ref_type", "?"))
    lines = []
    if names != DEFAULT_SUB_SHAPE:
        lines.append(
            "  - conditions in GitLab's default sub shape (project_path:...:ref_type:...:ref:...) "
            "while this project customises it (ci_id_token_sub_claim_components: "
            f"{','.join(names)}): write them in the shape shown above;"
        )
    if "ref_type" in components:
        other = "tags" if ref_type == "branch" else "branches"
        lines.append(f"  - a sub pattern for {other} while this job runs on a {ref_type};")
    return lines


def _condition(operator: str, key: str, value: str) -> str:
    return json.dumps({operator: {key: value}})[1:-1]


def _invalid_token(code: str, message: str, token: IdToken, settings: Settings) -> list[str]:
    lowered = message.lower()
    host = provider_host(token.issuer)
    partition, account, _ = _role_parts(settings.role_arn)
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
        audience = ", ".join(token.audience) or "none"
        if not token.has_audience_in(aws_audiences(settings.ci_server_url, settings.audiences)):
            # Minted for another service (Vault, say): adding it to AWS would let that
            # service's tokens in too.
            return [
                f"The token in {token.variable or 'use'} was minted for another audience "
                f"({audience}), not for AWS. Declare a separate ID token for AWS under "
                "id_tokens: in .gitlab-ci.yml whose 'aud:' is an audience (client ID) of the "
                f"IAM OIDC provider for {host} in account {account}, and use that one.",
            ]
        return [
            f"The token's audience ({audience}) is not an audience "
            f"(client ID) of the IAM OIDC provider for {host} in account {account}. Add it to "
            "the provider, or change 'aud:' under id_tokens: in .gitlab-ci.yml to one the "
            "provider lists.",
        ]
    if "provider" in lowered and ("not found" in lowered or "no openidconnect" in lowered):
        return [
            f"Account {account} has no IAM OIDC identity provider for {host} "
            f"(arn:{partition}:iam::{account}:oidc-provider/{host}). Create one with URL "
            f"{token.issuer} and the token's audience, or check that the role is in the "
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
