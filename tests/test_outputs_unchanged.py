"""The outputs stay what they were: every table and topic of a replay of the bundled sample
and of a simulated 200-match feed, against the fingerprints in `tests/golden/outputs.json`
(`tests/output_fingerprints.py` says how they were recorded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.output_fingerprints import GOLDEN, feeds, table_fingerprints, topic_fingerprints

RECORDED = json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def feed_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return feeds(tmp_path_factory.mktemp("fingerprints"))


@pytest.mark.parametrize("feed", sorted(RECORDED))
def test_tables_unchanged(feed: str, feed_paths: dict[str, Path], tmp_path: Path) -> None:
    # Two processes: the tables do not depend on how many there are.
    found = table_fingerprints(feed_paths[feed], tmp_path, processes=2)
    assert found == RECORDED[feed]["tables"]


@pytest.mark.parametrize("feed", sorted(RECORDED))
def test_topics_unchanged(feed: str, feed_paths: dict[str, Path]) -> None:
    assert topic_fingerprints(feed_paths[feed]) == RECORDED[feed]["topics"]
