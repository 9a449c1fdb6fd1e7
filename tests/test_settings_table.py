"""The settings table: every row resolves from each of its sources, and its names are
spelled once in the package. Fast: no servers, no botocore sessions."""

from __future__ import annotations

import ast
import copy
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

import gitlab_botocore
import gitlab_botocore_pytest
from gitlab_botocore import settings as settings_module
from gitlab_botocore.cache import cache_key
from gitlab_botocore.id_token import IdToken
from gitlab_botocore.settings import (
    KEYWORDS,
    ROLE_ARN_ROW,
    SETTINGS,
    EnvVar,
    Setting,
    Settings,
    resolve_settings,
    sts_inputs,
)
from gitlab_botocore.tools.cli import build_parser
from gitlab_botocore.tools.commands import CLI_SETTINGS

ROOT = Path(__file__).parent.parent
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/other"

# field: (raw text as in the environment or a profile, the resolved value)
SAMPLES: dict[str, tuple[str, Any]] = {
    "role_arn": (OTHER_ROLE, OTHER_ROLE),
    "token_variable": ("MY_TOKEN", "MY_TOKEN"),
    "role_session_name": ("deploy/eu", "deploy-eu"),
    "duration_seconds": ("1800", 1800),
    "policy": ('{"Version": "2012-10-17"}', '{"Version":"2012-10-17"}'),
    "policy_arns": (
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        ("arn:aws:iam::aws:policy/ReadOnlyAccess",),
    ),
    "retry_budget_seconds": ("5", 5.0),
    "chain_role_arns": (OTHER_ROLE, (OTHER_ROLE,)),
    "allowed_account_ids": (ACCOUNT, (ACCOUNT,)),
    "audiences": ("a, b", ("a", "b")),
    "require": ("1", True),
    "cache_dir": ("/var/cache/x", "/var/cache/x"),
    "region": ("eu-west-1", "eu-west-1"),
    "endpoint_url": ("http://127.0.0.1:1", "http://127.0.0.1:1"),
    "ci_server_url": ("https://gitlab.example", "https://gitlab.example"),
}
BASE = {EnvVar.ROLE_ARN: ROLE}


def _resolve(
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    profile: dict[str, str] | None = None,
    use_environment: bool = True,
) -> Settings:
    settings = resolve_settings(
        overrides=overrides or {},
        environ=environ if environ is not None else dict(BASE),
        profile_config=profile or {},
        use_environment=use_environment,
    )
    assert settings is not None
    return settings


def test_every_row_has_a_sample_and_a_settings_field() -> None:
    fields = set(Settings.__slots__)
    assert {row.field for row in SETTINGS} <= fields
    assert set(SAMPLES) == {row.field for row in SETTINGS}


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.env], ids=repr)
def test_every_row_resolves_from_each_of_its_variables(row: Setting) -> None:
    raw, expected = SAMPLES[row.field]
    for name in row.env:
        environ = {**BASE, name: raw}
        if name == EnvVar.TUTORIAL_ROLE_ARN:
            del environ[EnvVar.ROLE_ARN]  # the first name wins over the second
        assert getattr(_resolve(environ=environ), row.field) == expected, name


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.profile_key], ids=repr)
def test_every_row_with_a_profile_key_resolves_from_the_profile(row: Setting) -> None:
    raw, expected = SAMPLES[row.field]
    profile = {"gitlab_role_arn": ROLE, str(row.profile_key): raw}
    assert getattr(_resolve(environ={}, profile=profile), row.field) == expected
    # With a profile selected in code, the environment is skipped (but for the guards).
    environ = {**BASE, **dict.fromkeys(row.env, "")}
    explicit = _resolve(environ=environ, profile=profile, use_environment=False)
    assert getattr(explicit, row.field) == expected


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.keyword], ids=repr)
def test_every_keyword_wins_over_environment_and_profile(row: Setting) -> None:
    raw, expected = SAMPLES[row.field]
    assert row.keyword is not None
    settings = _resolve(overrides={row.keyword: raw})
    assert getattr(settings, row.field) == expected
    if row.env and row.field not in {"require", "cache_dir"}:
        default = getattr(_resolve(), row.field)
        assert default != expected, "the sample must differ from the default"


def test_environment_wins_over_profile_unless_a_profile_is_explicit() -> None:
    profile = {"gitlab_role_arn": OTHER_ROLE, "duration_seconds": "900"}
    environ = {**BASE, EnvVar.DURATION_SECONDS: "1800"}
    assert _resolve(environ=environ, profile=profile).duration_seconds == 1800
    explicit = _resolve(environ=environ, profile=profile, use_environment=False)
    assert (explicit.role_arn, explicit.duration_seconds) == (OTHER_ROLE, 900)


def test_guards_are_read_from_the_environment_even_with_an_explicit_profile() -> None:
    profile = {"gitlab_role_arn": ROLE}
    environ = {EnvVar.REQUIRE: "1", EnvVar.ALLOWED_ACCOUNT_IDS: ACCOUNT}
    explicit = _resolve(environ=environ, profile=profile, use_environment=False)
    assert (explicit.require, explicit.allowed_account_ids) == (True, (ACCOUNT,))
    with pytest.raises(gitlab_botocore.ConfigurationError, match=EnvVar.ALLOWED_ACCOUNT_IDS):
        _resolve(
            environ={EnvVar.ALLOWED_ACCOUNT_IDS: "111111111111"},
            profile=profile,
            use_environment=False,
        )


# field: a value its converter rejects (rows that accept anything are absent)
INVALID = {
    "role_arn": "deploy",
    "token_variable": "$TOKEN",
    "duration_seconds": "1h",
    "policy": "{not json",
    "policy_arns": "ReadOnlyAccess",
    "retry_budget_seconds": "soon",
    "chain_role_arns": "deploy",
    "allowed_account_ids": "123",
    "require": "maybe",
    "region": "EU West",
    "endpoint_url": "sts.local",
    "cache_dir": "/var/cache/x\0y",
}


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.field in INVALID], ids=repr)
def test_an_invalid_value_names_where_it_came_from(row: Setting) -> None:
    bad = INVALID[row.field]
    base = {} if row is ROLE_ARN_ROW else dict(BASE)
    sources: list[tuple[str, dict[str, Any]]] = []
    if row.keyword:
        sources.append(
            (f"the {row.keyword!r} argument", {"overrides": {row.keyword: bad}, "environ": base})
        )
    sources += [(name, {"environ": {**base, name: bad}}) for name in row.env]
    if row.profile_key:
        profile = {"gitlab_role_arn": ROLE, row.profile_key: bad}
        source = f"{row.profile_key!r} in the AWS config profile"
        sources.append((source, {"environ": {}, "profile": profile}))
    assert sources
    for source, kwargs in sources:
        with pytest.raises(gitlab_botocore.ConfigurationError) as caught:
            _resolve(**kwargs)
        assert source in str(caught.value), source
        assert caught.value.setting == source


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.keyword], ids=repr)
@pytest.mark.parametrize("stray", ["\n", "\r\n", " "], ids=["newline", "crlf", "space"])
def test_a_keyword_with_stray_whitespace_is_rejected_or_means_the_same(
    row: Setting, stray: str
) -> None:
    # Environment and profile values are stripped; a register() keyword is taken as given
    # (a value read from a file keeps its newline). It must never reach STS or a lookup
    # with the whitespace in it.
    assert row.keyword
    raw, expected = SAMPLES[row.field]
    base = {} if row is ROLE_ARN_ROW else dict(BASE)
    outcome: Settings | gitlab_botocore.ConfigurationError
    try:
        outcome = _resolve(overrides={row.keyword: raw + stray}, environ=base)
    except gitlab_botocore.ConfigurationError as error:
        outcome = error
    if isinstance(outcome, gitlab_botocore.ConfigurationError):
        assert outcome.setting == f"the {row.keyword!r} argument"
        assert repr(raw + stray) in str(outcome)
    else:
        assert getattr(outcome, row.field) == expected


def test_overrides_typed_dict_has_exactly_the_keywords() -> None:
    # Overrides exists for type checkers only (defining it would slow the import): read it
    # from the source.
    tree = ast.parse(Path(settings_module.__file__).read_text(encoding="utf-8"))
    (overrides,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "Overrides"
    ]
    names = {
        node.target.id
        for node in overrides.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    assert names == set(KEYWORDS)


def test_register_rejects_an_unknown_keyword_and_ignores_none() -> None:
    import botocore.session

    session = botocore.session.Session()
    with pytest.raises(TypeError, match="role_arnn"):
        gitlab_botocore.register(session, role_arnn=ROLE)  # type: ignore[call-arg]
    gitlab_botocore.register(session, role_arn=None, region="eu-west-1")


def test_cli_common_options_come_from_the_table() -> None:
    assert {row.field for row in CLI_SETTINGS} >= {"role_arn", "region", "duration_seconds"}
    arguments: list[str] = []
    for row in CLI_SETTINGS:
        assert row.cli is not None
        arguments += [row.cli, SAMPLES[row.field][0]]
    args = build_parser().parse_args([*arguments, "doctor"])
    for row in CLI_SETTINGS:
        assert getattr(args, str(row.keyword)) is not None, row.cli


def _token() -> IdToken:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"iss": "https://gitlab.example", "exp": 4102444800, "job_id": "5"}
    return IdToken.parse(f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln")


def test_cache_key_covers_the_sts_inputs_and_nothing_else() -> None:
    token = _token()
    base = _resolve()
    for row in SETTINGS:
        raw, _ = SAMPLES[row.field]
        changed = _resolve(overrides={row.keyword: raw}) if row.keyword else None
        if changed is None:
            continue
        differs = cache_key(changed, token) != cache_key(base, token)
        assert differs == row.sts_input, row
    assert set(sts_inputs(base)) == {row.field for row in SETTINGS if row.sts_input}


def test_relative_xdg_cache_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/job")
    relative = _resolve(environ={**BASE, EnvVar.CACHE: "1", EnvVar.XDG_CACHE_HOME: "cache"})
    assert relative.cache_dir == "/home/job/.cache/gitlab-botocore"
    absolute = _resolve(environ={**BASE, EnvVar.CACHE: "1", EnvVar.XDG_CACHE_HOME: "/xdg"})
    assert absolute.cache_dir == "/xdg/gitlab-botocore"


# -- names spelled once ---------------------------------------------------------------------


def _string_constants(path: Path) -> list[str]:
    """The string constants of a module, without its docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    # An attribute docstring is a bare string after an assignment: skip every bare string.
    bare = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings | bare
    ]


def test_every_setting_name_is_spelled_once_in_the_package() -> None:
    files = [
        *sorted(Path(gitlab_botocore.__file__).parent.rglob("*.py")),
        *sorted(Path(gitlab_botocore_pytest.__file__).parent.rglob("*.py")),
    ]
    constants = [text for path in files for text in _string_constants(path)]
    names = [name for row in SETTINGS for name in (*row.env, row.profile_key) if name]
    for name in names:
        word = re.compile(rf"(?<![\w$]){re.escape(name)}(?!\w)")
        spelled = [text for text in constants if word.search(text)]
        # A profile key may also be the field name its row starts with (duration_seconds).
        once = 2 if name in {row.field for row in SETTINGS} else 1
        assert len(spelled) == once, (name, spelled)
    # A keyword is its row's field name (an identifier of Settings and Overrides), or
    # spelled as a string once, in its row.
    for row in SETTINGS:
        if row.keyword and row.keyword != row.field:
            assert constants.count(row.keyword) == 1, row.keyword


def test_configuration_doc_lists_every_variable_of_the_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in doc.splitlines() if line.startswith("|"))
    for row in SETTINGS:
        for name in row.env:
            assert f"`{name}" in table, name
        if row.profile_key:
            assert f"`{row.profile_key}`" in table, row.profile_key
        if row.keyword:
            assert re.search(rf"\b{row.keyword}\b", doc), row.keyword


def test_the_guards_hold_what_was_enforced_keyword_and_environment_together() -> None:
    account = ROLE.split(":")[4]
    environ = {**BASE, "GITLAB_BOTOCORE_ALLOWED_ACCOUNT_IDS": f"{account},222222222222"}
    settings = _resolve(
        overrides={"allowed_account_ids": [account, "333333333333"], "require": False},
        environ={**environ, "GITLAB_BOTOCORE_REQUIRE": "1"},
    )
    assert settings.allowed_account_ids == (account,)
    assert settings.require is True


def test_settings_are_read_only_values_that_copy_and_pickle() -> None:
    settings = _resolve()
    twin = _resolve()
    assert settings == twin
    assert hash(settings) == hash(twin)
    for copied in (copy.copy(settings), copy.deepcopy(settings)):
        assert copied == settings
        assert repr(copied) == repr(settings)
    restored = pickle.loads(pickle.dumps(settings))  # noqa: S301 (our own bytes)
    assert (restored, restored.role_source) == (settings, settings.role_source)
    with pytest.raises(AttributeError, match="read-only"):
        settings.role_arn = OTHER_ROLE
    # What describes the job rather than the exchange is not part of equality.
    in_a_job = _resolve(environ={**BASE, "GITLAB_CI": "true"})
    assert in_a_job.in_gitlab_ci != settings.in_gitlab_ci
    assert in_a_job == settings
