"""pyproject.toml says what CI checks: the license is an SPDX string, and every floor is tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
version = pytest.importorskip("packaging.version")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression():
    # A TOML table here is deprecated by setuptools; the string needs setuptools >= 77.
    assert PROJECT["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in PROJECT["build-system"]["requires"][0]


def test_every_declared_floor_is_the_version_ci_installs_in_its_floor_job():
    ci = (ROOT / ".ci" / "run").read_text()
    pinned = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([0-9.]+)"', ci))
    for requirement in PROJECT["project"]["dependencies"]:
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement).groups()
        assert name in pinned, f"{name}'s floor {floor} is not installed by .ci/run's floor job"
        assert version.Version(pinned[name]) == version.Version(floor), (
            f"{name}: pyproject says >={floor}, .ci/run's floor job installs {pinned[name]}"
        )
