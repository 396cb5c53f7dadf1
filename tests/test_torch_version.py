"""The warning for a torch newer than the newest tested one."""

import warnings
from pathlib import Path

import pytest

from clarena_backbones import torch_version
from clarena_backbones.torch_version import NEWEST_TESTED, warn_if_untested


@pytest.fixture(autouse=True)
def fresh_cache():
    warn_if_untested.cache_clear()
    yield
    warn_if_untested.cache_clear()


@pytest.mark.parametrize("version", ["2.15.0", "2.14.2+cu130", "3.0.0a0+git1234", "2.15.0.dev20270101"])
def test_a_newer_torch_warns_once_naming_both_versions(version: str):
    with pytest.warns(RuntimeWarning) as caught:
        assert warn_if_untested(version)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"torch {version}" in message and NEWEST_TESTED in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_untested(version)  # the second call is silent


@pytest.mark.parametrize("version", ["2.13.0", "2.14.1", "2.14.1+cu130", "2.14.0+cpu"])
def test_a_tested_torch_does_not_warn(version: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_untested(version)


def test_the_newest_tested_is_the_documented_one():
    # docs/wheels.md states the tested range; keep it and this constant together
    wheels = (Path(__file__).resolve().parents[1] / "docs" / "wheels.md").read_text()
    assert f"torch {torch_version.OLDEST_SUPPORTED}" in wheels and NEWEST_TESTED in wheels
