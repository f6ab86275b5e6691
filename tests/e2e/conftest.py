"""Fixtures shared by the end-to-end tests: a test PACS and a node that delivers to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netutil import NodeProcess, PacsScp


@pytest.fixture()
def pacs(tmp_path: Path) -> Iterator[PacsScp]:
    """A Storage SCP standing in for the PACS, on a free port."""
    server = PacsScp(tmp_path / "pacs").start()
    yield server
    server.stop()


@pytest.fixture()
def node(tmp_path: Path, pacs: PacsScp) -> Iterator[NodeProcess]:
    """A node process delivering to ``pacs``; series without a count complete after 2 s."""
    proc = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    yield proc
    proc.stop()
