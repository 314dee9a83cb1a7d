"""Fixtures for the agent tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import FakeControlPlane


@pytest.fixture
def control_plane() -> Iterator[FakeControlPlane]:
    """A real HTTP server on 127.0.0.1 standing in for the control plane."""
    plane = FakeControlPlane()
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
