"""The version matrix: ``nox`` (or ``make matrix``) runs every session below.

* ``oldest``: the floor in pyproject.toml (botocore 1.31.16, boto3 1.28.16) on the
  oldest supported Python.
* ``newest``: the newest botocore and boto3 on the newest Python here (3.13 or 3.12,
  else the one running nox). It builds the sdist, installs the package from it and runs
  the tests of the unpacked sdist, not the checkout's: the published sdist is complete.
* ``aiobotocore``: aiobotocore with the botocore it pins: its tests and the core tests of
  the provider, the credentials and their refresh (the rest of the suite does not touch
  aiobotocore and runs in the other two sessions).

Each session installs the package with its ``testing`` and ``django`` extras, the ``test``
dependency group of pyproject.toml and its pins in one resolver run, so pip picks the
tools (moto, Django, ...) that work with the pinned versions, then runs the tests. nox
reads the group, so the sessions' pip needs no ``--group`` support (Python 3.9's does not).
Arguments after ``--`` go to pytest: ``nox -s oldest -- -x tests/test_provider.py``.
``make matrix`` installs every session first, one after another (their editable installs
write into the checkout), then runs the three test runs at once (``--no-install``).
A session whose Python is missing is skipped, except on CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["oldest", "newest", "aiobotocore"]
nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"  # the network reaches package registries only
nox.options.reuse_venv = "yes"  # pins are re-applied on every run; CI starts from none

OLDEST_PYTHON = "3.9"
NEWEST_PYTHONS = ("3.13", "3.12")
AIOBOTOCORE_PYTHON = "3.11"
OLDEST_PINS = ("botocore==1.31.16", "boto3==1.28.16")
AIOBOTOCORE_EXTRAS = ("aiobotocore[httpx2]", "trio")  # the anyio backend on trio, too
EXTRAS = "[testing,django]"
TEST = tuple(nox.project.dependency_groups(nox.project.load_toml("pyproject.toml"), "test"))
AIOBOTOCORE_TESTS = (
    "tests/test_aio.py",
    "tests/test_activation.py",
    "tests/test_credentials.py",
    "tests/test_exchange_unit.py",
    "tests/test_installation.py",
    "tests/test_provider.py",
    "tests/test_refresh.py",
)


def python(version: str) -> str:
    """An interpreter for ``version``: pyenv's if it has one, else ``pythonX.Y`` on PATH.

    pyenv's shims answer only for the versions pyenv has selected, so a plain
    ``python3.9`` may be on PATH and still not run.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(
        root.glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    return str(found[-1]) if found else version


def newest_python() -> str | None:
    """The newest of ``NEWEST_PYTHONS`` that runs here; ``None`` means nox's own Python."""
    for version in NEWEST_PYTHONS:
        candidate = python(version)
        on_path = shutil.which(f"python{version}")
        if Path(candidate).is_absolute() or (on_path and "shims" not in Path(on_path).parts):
            return candidate
    return None


def run_tests(session: nox.Session, *default_args: str) -> None:
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    session.run("pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or default_args))


@nox.session(python=python(OLDEST_PYTHON))
def oldest(session: nox.Session) -> None:
    """The oldest botocore and boto3 the package supports."""
    session.install("-e", f".{EXTRAS}", *TEST, *OLDEST_PINS)
    run_tests(session)


@nox.session(python=newest_python())
def newest(session: nox.Session) -> None:
    """The newest botocore and boto3 on the registry; the tests of the sdist, installed."""
    # Outside the checkout (not session.create_tmp(), which also points TMPDIR into .nox/):
    # pytest run from a temporary directory must not find this project's configuration.
    # Built with nox's own Python (``build`` is in the lint group), not through session.run,
    # so that ``--install-only`` (install this sdist) and ``--no-install`` (run its tests)
    # both have it.
    workdir = Path(tempfile.mkdtemp(prefix="gitlab-botocore-sdist-"))
    session.log(f"sdist unpacked in {workdir}")
    subprocess.run(  # noqa: S603 (a fixed command)
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(workdir), "."],
        check=True,
        capture_output=True,
    )
    (archive,) = workdir.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(workdir, filter="data")
    tree = workdir / archive.name.removesuffix(".tar.gz")
    # The tests must import the package installed from the sdist, not the copy beside them.
    for package in ("gitlab_botocore", "gitlab_botocore_pytest"):
        shutil.rmtree(tree / package)
    session.install(f"{archive}{EXTRAS}", *TEST)
    # A reused venv already has this version: install it again from this sdist.
    session.install("--force-reinstall", "--no-deps", str(archive))
    session.install("--upgrade", "botocore", "boto3")
    session.chdir(tree)
    try:
        run_tests(session)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@nox.session(python=python(AIOBOTOCORE_PYTHON))
def aiobotocore(session: nox.Session) -> None:
    """aiobotocore with the botocore (and boto3) it pins."""
    session.install("-e", f".{EXTRAS}", *TEST, *AIOBOTOCORE_EXTRAS)
    run_tests(session, *AIOBOTOCORE_TESTS)
