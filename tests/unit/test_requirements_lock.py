"""The locks every install uses (scripts/lock writes them; scripts/install installs
requirements-dev.lock into .venv, lab/node/build puts requirements.lock into the node image):
each names every dependency pyproject.toml names, at a version inside its range, each entry one
exact version with its sha256 hashes, and the runtime lock agrees with the dev lock, so that the
node image runs the versions CI tested."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?P<rest>.*)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _entries(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of a lock in pip's hash-checking format; anything but
    `name==version --hash=sha256:...` entries and comments fails."""
    text = re.sub(r"\\\n", " ", path.read_text())  # join the continuation lines
    out: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"{path.name}: not an exact pin: {line[:100]!r}"
        name = canonicalize_name(m["name"])
        words = m["rest"].split()
        assert all(HASH.match(w) for w in words), f"{path.name}: {name}: only hashes may follow"
        assert words, f"{path.name}: {name} has no hash"
        assert name not in out, f"{path.name}: {name} twice"
        out[name] = (Version(m["version"]), words)
    return out


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _requirements(specs: list[str]) -> list[Requirement]:
    reqs = [Requirement(s) for s in specs]
    # Only what applies to the locks' target, CPython 3.11 on Linux.
    env = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
           "platform_system": "Linux", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def test_both_locks_are_exact_pins_with_hashes() -> None:
    for path in (RUNTIME_LOCK, DEV_LOCK):
        entries = _entries(path)
        assert entries, f"{path.name} is empty"
        for name, (_, hashes) in entries.items():
            assert hashes, f"{path.name}: {name} has no hash"


def test_runtime_lock_covers_every_runtime_dependency_in_its_range() -> None:
    locked = _entries(RUNTIME_LOCK)
    for req in _requirements(_pyproject()["project"]["dependencies"]):
        name = canonicalize_name(req.name)
        assert name in locked, f"requirements.lock lacks {req} (run scripts/lock --keep)"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {name}=={version}, outside pyproject.toml's {req}")


@pytest.mark.parametrize("where", ["dependencies", "dev", "build-system"])
def test_dev_lock_covers_every_dependency_in_its_range(where: str) -> None:
    project = _pyproject()
    specs = {"dependencies": project["project"]["dependencies"],
             "dev": project["project"]["optional-dependencies"]["dev"],
             "build-system": project["build-system"]["requires"]}[where]
    locked = _entries(DEV_LOCK)
    for req in _requirements(specs):
        name = canonicalize_name(req.name)
        assert name in locked, f"requirements-dev.lock lacks {req} (run scripts/lock --keep)"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements-dev.lock has {name}=={version}, outside pyproject.toml's {req}")


def test_runtime_lock_is_the_dev_locks_runtime_part() -> None:
    """The node image installs requirements.lock, CI tests with requirements-dev.lock: every
    runtime package at the same version in both, with the same hashes."""
    runtime, dev = _entries(RUNTIME_LOCK), _entries(DEV_LOCK)
    for name, (version, hashes) in runtime.items():
        assert name in dev, f"requirements-dev.lock lacks the runtime package {name}"
        assert dev[name][0] == version, (
            f"{name}: {version} in requirements.lock, {dev[name][0]} in requirements-dev.lock")
        assert set(dev[name][1]) == set(hashes), f"{name}: the two locks' hashes differ"


def test_the_parser_refuses_what_pip_would_not_check(tmp_path: Path) -> None:
    for bad in ("aiohttp>=3.9 \\\n    --hash=sha256:" + "0" * 64,  # a range, not a pin
                "aiohttp==3.9.0",  # no hash
                "aiohttp==3.9.0 --hash=md5:abc",
                "-e .",
                "--index-url https://example.invalid/simple"):
        lock = tmp_path / "requirements.lock"
        lock.write_text("# header\n" + bad + "\n")
        with pytest.raises(AssertionError):
            _entries(lock)
    lock.write_text("# header\naiohttp==3.9.0 \\\n    --hash=sha256:" + "a" * 64 +
                    " \\\n    --hash=sha256:" + "b" * 64 + "\n    # via tinykube\n")
    assert _entries(lock) == {"aiohttp": (Version("3.9.0"), [
        "--hash=sha256:" + "a" * 64, "--hash=sha256:" + "b" * 64])}
