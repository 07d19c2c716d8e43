"""Every YAML under configs/ loads and validates against the real registries.

Parametrised over the glob, so a config added later is tested without touching this file.
Validation reads no data and builds no model (names, arguments and data options only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from garden.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_validates(path):
    config = load_config(path)  # schema, then model/task/dataset names and constructor arguments
    assert config.experiment


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_header(path):
    """DESIGN.md: the first line is a comment giving the command, the expected metric and the time."""
    first = path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    assert first.startswith("#") and "run.py" in first, (
        f"{_id(path)}: the first line must be a comment with the command (python run.py --config ...), "
        f"the expected metric and the time on a 2-core CPU; got {first!r}")
