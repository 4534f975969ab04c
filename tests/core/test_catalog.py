from __future__ import annotations

import json
from importlib import resources

import pytest

from gemmadesk.core.catalog import SIZES, load_catalog, parse_catalog, validate


def test_shipped_catalog_is_complete_and_valid() -> None:
    catalog = load_catalog()
    assert validate(catalog) == []
    assert {e.size for e in catalog.runnable} == set(SIZES)
    # Google's official QAT Q4_0 GGUF exists for every size, with its (inconsistent) real file names.
    google = {e.size: e for e in catalog.runnable if e.publisher == "google"}
    assert google["12B"].file is not None
    assert google["12B"].file.filename == "gemma-4-12b-it-qat-q4_0.gguf"
    assert google["26B-A4B"].file is not None
    assert google["26B-A4B"].file.filename == "gemma-4-26B_q4_0-it.gguf"
    # The non-GGUF formats are listed but never offered to the engine.
    not_runnable = [e for e in catalog.entries if not e.runnable]
    assert {e.format for e in not_runnable} >= {"w4a16-ct", "unquantized", "mobile-ct"}
    assert all(e.file is None for e in not_runnable)
    assert not any(e.size == "26B-A4B" and e.format == "w4a16-ct" for e in catalog.entries)


def test_validate_reports_broken_entries() -> None:
    raw = json.loads(resources.files("gemmadesk.core").joinpath("data/catalog.json").read_text())
    raw["entries"].append(dict(raw["entries"][0]))  # duplicate id
    raw["entries"][1]["file"]["sha256"] = "abc123"  # abbreviated digest is not usable for verification
    raw["entries"][2]["repo_id"] = "noslash"
    problems = validate(parse_catalog(raw))
    assert any("duplicate id" in p for p in problems)
    assert any("sha256" in p for p in problems)
    assert any("bad repo id" in p for p in problems)


@pytest.mark.parametrize(
    ("query", "expected"),
    [("e2b", "e2b-google-q4_0"), ("12B:ud-q4_k_xl", "12b-unsloth-ud-q4_k_xl"), ("26b-a4b", "26b-a4b-google-q4_0"),
     ("31b-unsloth-ud-q4_k_xl", "31b-unsloth-ud-q4_k_xl")],
)
def test_find(query: str, expected: str) -> None:
    assert load_catalog().find(query).id == expected


def test_find_unknown_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no runnable catalog entry"):
        load_catalog().find("70b")
