"""The committed real-world subset (tests/realworld) through the conformance checks.

Each file runs in a worker process, as `make conformance` runs the full corpus: a hang is
killed, a crash is reported, peak memory is measured. Each must end as expected.json says, and
be right: SUCCEEDED upright with the reference's colours, or FAILED with a true reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_cli.conformance import MEMORY_BUDGET_MB, Verdict, corpus_files, run_checks

REALWORLD = Path(__file__).resolve().parents[1] / "realworld"
EXPECTED: dict[str, str] = json.loads((REALWORLD / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def verdicts() -> dict[str, Verdict]:
    files = {
        path.relative_to(REALWORLD).as_posix(): path
        for path in corpus_files(REALWORLD)
        if path.suffix not in (".json", ".md")
    }
    return {verdict.name: verdict for verdict in run_checks(files, timeout=120)}


def test_every_committed_file_is_checked(verdicts: dict[str, Verdict]) -> None:
    assert sorted(verdicts) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_ends_right(verdicts: dict[str, Verdict], name: str) -> None:
    verdict = verdicts[name]
    assert verdict.ok, f"{verdict.why} ({verdict.detail})"
    assert (verdict.outcome if verdict.outcome == "SUCCEEDED" else verdict.reason) == EXPECTED[name], verdict.detail
    assert verdict.peak_mb < MEMORY_BUDGET_MB
    if verdict.outcome == "SUCCEEDED":
        assert verdict.psnr_db is not None


def test_the_subset_covers_what_the_issue_is_about(verdicts: dict[str, Verdict]) -> None:
    rendered = {v.name.rsplit(".", 1)[-1] for v in verdicts.values() if v.outcome == "SUCCEEDED"}
    assert {"heic", "heif", "avif", "avifs", "tif", "png", "jpg", "gif", "webp", "mpo"} <= rendered
    assert any(v.frames > 1 for v in verdicts.values() if v.outcome == "SUCCEEDED")  # first frame / primary
