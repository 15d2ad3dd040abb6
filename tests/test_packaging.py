"""Packaging: the project's metadata builds without setuptools' deprecation
warnings (a user's ``pip install`` should print nothing alarming)."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_setuptools_reads_the_metadata_without_a_deprecation_warning() -> None:
    pytest.importorskip("setuptools", minversion="77")  # PEP 639 support
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert [str(w.message) for w in caught if "eprecat" in w.category.__name__ + str(w.message)] == []
    assert dist.metadata.license_expression == "Apache-2.0"
