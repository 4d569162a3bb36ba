"""Installs are reproducible: constraints.txt pins every package, the pins satisfy pyproject.toml's bounds
(including the ones where a release broke us), and this environment — CI's — is exactly those pins."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_requirement_is_pinned_within_its_bounds():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"


def test_the_bounds_that_broke_us_are_in_force():
    pins = _pins()
    bounds = {canonicalize_name(r.name): r.specifier for r in _requirements()}
    assert pins["prefect"] == "3.8.8"
    assert not bounds["sqlalchemy"].contains("2.1.0"), "SQLAlchemy 2.1 makes Prefect 3.8.8's scheduler raise"
    assert not bounds["fastapi"].contains("0.151.0"), "fastapi 0.151 breaks the Prefect 3.8.8 server"
    assert not bounds["typer"].contains("0.30.0") and not bounds["typer"].contains("0.28.0")


def test_this_environment_is_the_pinned_one():
    """CI installs with -c constraints.txt: what runs the tests is what the constraints say."""
    mismatched = []
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-specific pin not needed here
        if installed != version:
            mismatched.append(f"{name}: installed {installed}, pinned {version}")
    assert not mismatched
