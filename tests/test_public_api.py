"""The public API is what the documentation says, and the test kit uses only public names."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gitlab_botocore

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_KIT = sorted((Path(gitlab_botocore.__file__).parent / "testing").glob("*.py"))


def documented(name: str) -> bool:
    """Whether README.md or a page of docs/ shows ``name`` as code (`name`, `name(...)`)."""
    pattern = re.compile(rf"`(?:gitlab_botocore\.)?{re.escape(name)}(?:\(|`|\.)")
    return any(pattern.search(page.read_text(encoding="utf-8")) for page in DOCS)


@pytest.mark.parametrize("name", [n for n in gitlab_botocore.__all__ if not n.startswith("__")])
def test_every_exported_name_is_documented(name: str) -> None:
    assert documented(name), f"gitlab_botocore.{name} is exported but README/docs never show it"


@pytest.mark.parametrize("name", gitlab_botocore.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(gitlab_botocore, name) is not None


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("TokenSource", "token_source"),
        ("EnvironmentTokenSource", "token_source"),
        ("IdToken", "id_token"),
        ("Settings", "settings"),
        ("EnvVar", "settings"),
    ],
)
def test_internal_types_are_not_exported_but_stay_importable(name: str, module: str) -> None:
    # register() takes no token source and returns no settings: these are not API (yet).
    assert name not in gitlab_botocore.__all__
    with pytest.raises(AttributeError):
        getattr(gitlab_botocore, name)
    __import__(f"gitlab_botocore.{module}")
    assert getattr(sys.modules[f"gitlab_botocore.{module}"], name) is not None


def test_the_provider_loads_on_first_use() -> None:
    code = (
        "import sys, gitlab_botocore; "
        "before = 'gitlab_botocore.provider' in sys.modules; "
        "gitlab_botocore.GitLabOIDCProvider; "
        "print(before, 'gitlab_botocore.provider' in sys.modules)"
    )
    env = {"GITLAB_BOTOCORE_DISABLE": "1", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.stdout.split() == ["False", "True"], result.stderr


def private_imports(path: Path) -> list[str]:
    """Underscore names ``path`` imports from gitlab_botocore outside the test kit."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level:
            continue
        module = node.module or ""
        if not module.startswith("gitlab_botocore") or module.startswith("gitlab_botocore.testing"):
            continue
        found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("path", TEST_KIT, ids=lambda p: p.name)
def test_the_test_kit_imports_no_private_helper(path: Path) -> None:
    assert private_imports(path) == []


def test_the_private_import_check_sees_them(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from gitlab_botocore.tools.trust_policy.evaluation import _as_list\n")
    assert private_imports(module) == ["gitlab_botocore.tools.trust_policy.evaluation._as_list"]


@pytest.mark.parametrize("path", TEST_KIT, ids=lambda p: p.name)
def test_the_test_kit_names_no_class_like_a_public_one(path: Path) -> None:
    name = "" if path.stem == "__init__" else f".{path.stem}"
    module = importlib.import_module(f"gitlab_botocore.testing{name}")
    public = set(gitlab_botocore.__all__)
    clash = public & set(getattr(module, "__all__", dir(module)))
    assert not clash, f"{module.__name__} defines {sorted(clash)}, as gitlab_botocore does"


def test_the_test_kit_modules_are_found() -> None:
    assert {"sts.py", "aws.py", "faults.py", "issuer.py"} <= {path.name for path in TEST_KIT}
