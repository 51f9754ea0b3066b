"""The config reference (docs/reference.md) is generated from the typed config and current."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import BuildConfig
from pipeline.reference import reference, table_model
from pipeline.targets import Target

PAGE = Path(__file__).parents[1] / "docs" / "reference.md"


def test_the_reference_page_is_current() -> None:
    assert PAGE.read_text() == reference(), (
        "docs/reference.md is out of date: python -m pipeline.reference > docs/reference.md")


def test_every_key_is_in_the_reference_with_what_it_does() -> None:
    """Each key of each table (and of a target file) has its row, and every row says what
    the key does (the comment beside the field in the code)."""
    page = reference()
    keys = [f"{table}.{name}" for table, field in BuildConfig.model_fields.items()
            for name in table_model(field.annotation).model_fields]
    keys += list(Target.model_fields)
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines()
            if line.startswith("| `")}
    assert set(keys) == set(rows)
    undocumented = [k for k, line in rows.items() if not line.split("|")[-2].strip()]
    assert not undocumented, undocumented
