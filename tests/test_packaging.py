"""What setup.cfg claims is what CI tests: the Python versions, and the oldest dependencies."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# The extras the oldest-dependency run installs (scripts/test: .[test] with the constraints).
TESTED_EXTRAS = ("examples", "test")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _requirements() -> list[Requirement]:
    cfg = _setup_cfg()
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in TESTED_EXTRAS:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "tests/constraints-oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints-oldest.txt: {line!r} is not name==version"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_every_lower_bound_is_pinned_in_the_oldest_constraints():
    pins = _pins()
    for req in _requirements():
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert lower, f"setup.cfg: {req} has no lower bound (>=)"
        pinned = pins.get(req.name.lower())
        assert pinned is not None and Version(pinned) == Version(lower[0]), (
            f"{req.name}: setup.cfg says >={lower[0]}, tests/constraints-oldest.txt pins "
            f"{pinned}")
    names = {req.name.lower() for req in _requirements()}
    assert set(pins) <= names, f"pinned but not required: {set(pins) - names}"


def test_python_requires_names_exactly_the_versions_ci_tests():
    cfg = _setup_cfg()
    admitted = SpecifierSet(cfg["options"]["python_requires"])
    claimed = {v for v in (f"3.{m}" for m in range(6, 20)) if f"{v}.0" in admitted}
    classifiers = set(re.findall(r"Programming Language :: Python :: (3\.\d+)",
                                 cfg["metadata"]["classifiers"]))
    script = (ROOT / "scripts/test").read_text()
    tested = re.search(r'^PYTHONS="\$\{HPCPAR_PYTHONS:-([0-9. ]+)\}"', script, re.MULTILINE)
    assert tested, "scripts/test sets PYTHONS from HPCPAR_PYTHONS"
    assert claimed == classifiers == set(tested.group(1).split())
