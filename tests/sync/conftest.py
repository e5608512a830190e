"""Fixtures for sync tests: a throwaway PostgreSQL server and hub processes on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import TempPostgres, unavailable_reason
from tests.synchelp import Hub


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pg = TempPostgres().start()
    yield pg
    pg.stop()


def hub_db(request: pytest.FixtureRequest, backend: str, folder: Path) -> str:
    if backend == "postgres":
        return request.getfixturevalue("postgres").new_database(f"hub_{uuid.uuid4().hex[:12]}")
    return str(folder / "hub.db")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Hub]:
    """One hub per backend for a test module; tests use their own device ids."""
    folder = tmp_path_factory.mktemp("hub")
    running = Hub(hub_db(request, request.param, folder), folder).start()
    yield running
    running.stop()
