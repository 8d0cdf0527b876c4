"""Fixtures of the fault matrix: prebuilt projects, copied per test."""

from __future__ import annotations

import pytest

from tests.faults.helpers import Template


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return Template(tmp_path_factory.mktemp("fault_template"))
