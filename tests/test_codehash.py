"""Cache keys from the code: an edit to a helper re-keys the stages that run it and,
through their outputs, everything downstream — and nothing upstream (issue 33, item 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.codehash import PACKAGE, closure, stage_code
from pipeline.runner import PLAN, Step
from pipeline.stages import REGISTRY
from pipeline.targets import load_target

TARGET = load_target("cpu-int4")


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """A temporary copy of the pipeline package to edit."""
    root = tmp_path / "pipeline"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _codes(root: Path) -> dict[str, str]:
    return {s.id: stage_code(REGISTRY[s.stage_for(TARGET)], root) for s in PLAN}


def _changed(root: Path) -> list[str]:
    before, after = _codes(PACKAGE), _codes(root)
    return [step for step in before if before[step] != after[step]]


def _reaches(step: Step, changed: set[str]) -> bool:
    """Whether a step reads (directly or through other steps) a changed step's output."""
    by_id = {s.id: s for s in PLAN}
    refs = [r for r in step.inputs.values() if not r.startswith("@")]
    return any(r in changed or _reaches(by_id[r], changed) for r in refs)


def test_a_helper_edit_rekeys_its_stages_and_downstream_and_nothing_upstream(copy: Path) -> None:
    """The bench's child process is started by name (`python -m pipeline.measure.child`),
    never imported: the digest still follows it."""
    child = copy / "measure" / "child.py"
    child.write_text(child.read_text() + "\nEDITED = 1  # a code change\n")
    changed = _changed(copy)
    order = [s.id for s in PLAN]
    assert {"bench_teacher", "bench_student", "bench"} <= set(changed)
    first = min(order.index(s) for s in changed)
    assert order[first] == "bench_teacher"  # nothing before the first user of the helper
    for step in PLAN[first:]:  # after it, each step re-keys by its code or chains on one that does
        assert step.id in changed or _reaches(step, set(changed)), step.id


def test_a_teacher_helper_edit_rekeys_the_teacher(copy: Path) -> None:
    batch = copy / "generation" / "llm_batch.py"
    batch.write_text(batch.read_text().replace("def ", "def _unused() -> None:\n    pass\n\n\ndef ", 1))
    changed = _changed(copy)
    assert "teacher" in changed and "prompts" not in changed and "filter" not in changed


def test_comments_docstrings_and_layout_do_not_rekey(copy: Path) -> None:
    """An 18-minute teacher run is not thrown away for a reworded docstring."""
    teacher = copy / "stages" / "teacher.py"
    text = teacher.read_text()
    head, _, rest = text.partition('"""')
    doc, _, body = rest.partition('"""')
    body = body.replace("\n\n\n", "\n\n\n# a comment\n", 1)
    teacher.write_text(head + '"""A reworded docstring."""' + body)
    assert _changed(copy) == []


def test_the_boundary_is_keyed_through_settings(copy: Path) -> None:
    """config/targets reach a stage only as its Settings (in the key already): editing them
    does not re-key every stage; a settings value they change does (tested in test_cache)."""
    config = copy / "config.py"
    config.write_text(config.read_text() + "\nEDITED = 1\n")
    assert _changed(copy) == []
    assert "pipeline.config" not in closure("pipeline.stages.teacher")


def test_a_code_salt_enters_the_digest() -> None:
    class Salted:
        code_salt = "date tables v2"

    Salted.__module__ = "pipeline.stages.filter"
    assert stage_code(Salted()) != stage_code(REGISTRY["filter"])


def test_the_bundle_is_keyed_by_everything_it_ships() -> None:
    """The bundle copies runkit/ (whose modules import each other relatively) and the
    launcher written as run.py (named only as a string): all of it is in its digest, so an
    edit to any shipped file re-bundles; the bench reaches each runtime adapter by name."""
    bundle = closure("pipeline.stages.bundle")
    assert {"pipeline.runkit.run", "pipeline.runkit.grammar", "pipeline.runkit.dates",
            "pipeline.runkit.launcher"} <= set(bundle)
    bench = closure("pipeline.stages.bench")
    assert {"pipeline.measure.runtimes.gguf", "pipeline.measure.runtimes.onnx_genai",
            "pipeline.measure.child"} <= set(bench)
