"""The package's three roles stay apart: the runtime never imports the tools or the test kit.

The runtime is every module at the package root (plus the asyncio and Django edges); the tools
live in ``gitlab_botocore.tools`` and the test kit in ``gitlab_botocore.testing``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gitlab_botocore

# The package under test, wherever it is installed from (the checkout, or an unpacked sdist
# whose own copy of the package was removed so that the installed one is tested).
PACKAGE = Path(gitlab_botocore.__file__).parent
RUNTIME = sorted(
    path
    for path in PACKAGE.rglob("*.py")
    # ``python -m gitlab_botocore`` is the command line's entry point, run, never imported.
    if path.relative_to(PACKAGE).parts[0] not in {"tools", "testing", "__main__.py"}
)
FORBIDDEN = ("gitlab_botocore.tools", "gitlab_botocore.testing")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports made absolute."""
    package = ".".join(("gitlab_botocore", *path.relative_to(PACKAGE).parent.parts))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_runtime_modules_are_found() -> None:
    names = {path.name for path in RUNTIME}
    assert {"settings.py", "id_token.py", "exchange.py", "credentials.py", "provider.py"} <= names
    assert "cli.py" not in names


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_runtime_never_imports_tools_or_the_test_kit(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m.startswith(FORBIDDEN))
    assert not bad, f"{path.name} imports {bad}"


def test_the_import_check_sees_relative_imports() -> None:
    module = PACKAGE / "contrib" / "django" / "apps.py"
    assert "gitlab_botocore.installation" in imported_modules(module) or any(
        m.startswith("gitlab_botocore") for m in imported_modules(module)
    )
    commands = PACKAGE / "tools" / "commands.py"
    assert "gitlab_botocore.tools.doctor" in imported_modules(commands)
