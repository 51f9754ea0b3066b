"""The README is a manual and measurements live in one place (issue 33).

The README's first screen is the title, one paragraph and the two commands; its sections come
in the manual's order and link the generated config reference and the measurements page; no
doc or shipped config points outside the repository; a target file keeps at most one comment
line per setting; the README quotes no measured numbers (they live in docs/measurements.md,
whose generated section keeps its markers).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MEASUREMENTS = ROOT / "docs" / "measurements.md"
FIRST_SCREEN = 15  # lines
COMMANDS = ["make target=cpu-int4", "make test"]
SECTIONS = ["## Quickstart", "## Concepts", "## How-to", "## Reference", "## Troubleshooting"]
OUTSIDE = ("../shared", "shared/MODELS")
# a measured number in running text: a 3-decimal score or KL, a speed, rate, size or time, a ratio
MEASURED = re.compile(r"\b0\.\d{3}\b|\b\d+(?:\.\d+)? ?(?:tok/s|rows/min|MB|ms)\b"
                      r"|\b\d+(?:\.\d+)? (?:s|min)\b|\b\d+(?:\.\d+)?[×x](?!\w)")
MAX_MEASURED = 5
DOCS = sorted([README, *(ROOT / "docs").glob("*.md"), *(ROOT / "targets").glob("*.toml"),
               ROOT / "pipeline" / "default.toml", *(ROOT / "examples").glob("**/*.toml")])


def first_screen_problems(text: str) -> list[str]:
    """What keeps `text`'s first screen from being the title, one paragraph, and a bash block
    with exactly the two commands (comments after a command are allowed)."""
    lines = text.splitlines()[:FIRST_SCREEN]
    if not lines or lines[0] != "# distill-edge":
        return ["line 1 is not '# distill-edge'"]
    i = 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    start = i
    while i < len(lines) and lines[i].strip() and not lines[i].startswith(("```", "#")):
        i += 1
    if i == start:
        return ["no paragraph after the title"]
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != "```bash":
        return [f"the paragraph is not followed by a ```bash block within {FIRST_SCREEN} lines"]
    try:
        end = lines.index("```", i + 1)
    except ValueError:
        return [f"the bash block does not close within {FIRST_SCREEN} lines"]
    commands = [line.split("#", 1)[0].strip() for line in lines[i + 1:end]]
    commands = [c for c in commands if c]
    return [] if commands == COMMANDS else [f"the block's commands are {commands}, not {COMMANDS}"]


def measured_numbers(text: str) -> list[str]:
    """Tokens in `text` that look like a number measured on some machine."""
    return [m.group(0) for m in MEASURED.finditer(text)]


def test_readme_first_screen_is_title_paragraph_and_the_two_commands() -> None:
    assert first_screen_problems(README.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("# other\n\nText.\n\n```bash\nmake target=cpu-int4\nmake test\n```\n", "line 1"),
    ("# distill-edge\n\n```bash\nmake target=cpu-int4\nmake test\n```\n", "no paragraph"),
    ("# distill-edge\n\nText.\n\n```bash\nmake\nmake test\n```\n", "commands"),
    ("# distill-edge\n\nText.\n" + "more.\n" * 20 + "\n```bash\nmake test\n```\n", "followed by"),
])
def test_first_screen_check_fails_on_a_bad_opening(text: str, problem: str) -> None:
    assert any(problem in p for p in first_screen_problems(text))


def test_readme_sections_in_order_and_links_reference_and_measurements() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    positions = [lines.index(heading) if heading in lines else -1 for heading in SECTIONS]
    assert -1 not in positions, [h for h, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "the README's sections are out of order"
    text = "\n".join(lines)
    for page in ("docs/reference.md", "docs/measurements.md"):
        assert re.search(rf"\]\({re.escape(page)}[)#]", text), f"the README does not link {page}"
        assert (ROOT / page).is_file(), page


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_outside_the_repo(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not [s for s in OUTSIDE if s in text], f"{path.relative_to(ROOT)} points outside the repo"


@pytest.mark.parametrize("path", sorted((ROOT / "targets").glob("*.toml")), ids=lambda p: p.stem)
def test_target_files_keep_one_comment_line_per_setting(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    settings = len(tomllib.loads(text))
    comments = sum(1 for line in text.splitlines() if line.lstrip().startswith("#"))
    assert comments <= settings + 1, (
        f"{path.name}: {comments} comment lines for {settings} settings; "
        "experiment history belongs in docs/measurements.md")


def test_readme_quotes_no_measurements() -> None:
    found = measured_numbers(README.read_text(encoding="utf-8"))
    assert len(found) <= MAX_MEASURED, f"measured numbers in README.md (move them to " \
                                       f"docs/measurements.md): {found}"


def test_the_measurement_check_catches_a_lab_notebook() -> None:
    """Lines of the README before issue 33, which quoted its measurements inline."""
    old = ("setup with an empty pip cache measured 5 min 20 s on a 2-core AMD EPYC VM with AVX-512\n"
           "default build ships: Q4_K_M + grammar 0.871 (95 % 0.849–0.891) vs the teacher 0.816,\n"
           "paired difference +0.055 (95 % +0.012 to +0.101) (measured 2026-12-07, AMD EPYC with\n"
           "AVX-512 cores, one at a time → batched: teacher 191 → 134 s (2 of 79 batched answers\n"
           "on a quiet machine the default decodes ~3× faster than\n"
           "naive one-at-a-time 10.4 rows/min, prefix reuse\n")
    assert measured_numbers(old) == ["5 min", "20 s", "0.871", "0.849", "0.891", "0.816", "0.055",
                                     "0.012", "0.101", "134 s", "3×", "10.4 rows/min"]
    assert len(measured_numbers(old)) > MAX_MEASURED
    assert measured_numbers("2 epochs at 1e-4, at most 0.03 below, 40 prompts, 100,000 requests/day, "
                            "groups of 16, x86, Q4_0_4x4, seeds 1–9") == []


def test_measurements_page_keeps_the_generated_section_markers() -> None:
    text = MEASUREMENTS.read_text(encoding="utf-8")
    begin, end = "<!-- decisions:begin -->", "<!-- decisions:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert text.index(begin) < text.index(end)
