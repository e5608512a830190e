"""Fixtures shared by the pipeline tests."""

import pytest

from edge.inference.detector import Detector
from tests.conftest import BUNDLED_MODEL


@pytest.fixture(scope="package")
def detector() -> Detector:
    """The bundled detector, one thread (the tests check results, not speed)."""
    return Detector(BUNDLED_MODEL, threads=1)
