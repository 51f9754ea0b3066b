"""The house rules that keep the tree changeable, held by an AST walk over `pipeline/`:
imports run one way (scripts -> pipeline; stages -> libraries; never back), no stage imports
another stage, and a new format is one table entry + one export stage + one runtime adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipeline"
# Library packages the stages use; they never reach back up into stages, runner or CLI.
LIBRARIES = ("training", "generation", "measure", "report", "models", "tasks")
UPWARD = ("pipeline.stages", "pipeline.runner", "pipeline.cli")


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; `from x import y` counts x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


FILES = sorted(PIPELINE.rglob("*.py"))


def test_the_pipeline_never_imports_the_scripts() -> None:
    bad = {_module(f): sorted(n for n in _imports(f) if n.split(".")[0] == "benchmarks")
           for f in FILES}
    assert not {m: n for m, n in bad.items() if n}


def test_no_stage_imports_another_stage() -> None:
    stages = {_module(f) for f in (PIPELINE / "stages").glob("*.py") if f.name != "__init__.py"}
    bad = {}
    for f in (PIPELINE / "stages").glob("*.py"):
        if f.name == "__init__.py":  # the registry imports every stage, by design
            continue
        others = {n for n in _imports(f) if n in stages and n != _module(f)}
        if others:
            bad[_module(f)] = sorted(others)
    assert not bad


@pytest.mark.parametrize("package", LIBRARIES)
def test_libraries_do_not_import_stages_runner_or_cli(package: str) -> None:
    bad = {}
    for f in sorted((PIPELINE / package).rglob("*.py")):
        up = sorted(n for n in _imports(f) if n.startswith(UPWARD))
        if up:
            bad[_module(f)] = up
    assert not bad


def test_the_import_graph_is_what_the_checks_see() -> None:
    """The walk sees real arrows (a check that finds nothing must be able to find something)."""
    graph = {_module(f): {n for n in _imports(f) if n.startswith("pipeline")} for f in FILES}
    assert "pipeline.training.trainer" in graph["pipeline.training.distill_job"]
    assert any(n.startswith("pipeline.stages.") for n in graph["pipeline.stages"])


def test_a_new_format_is_one_entry_one_stage_one_adapter(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """Register a fake format: targets validate against it, the runner plans its export
    stage, bench rows get its adapter, and its artifact names come from the table."""
    from pipeline import formats
    from pipeline.config import load_config
    from pipeline.formats import Format
    from pipeline.measure import runtimes
    from pipeline.runner import PLAN
    from pipeline.stages import REGISTRY
    from pipeline.targets import load_target

    fake = Format(name="fake", runtime="fakert", export_stage="export_fake", fp="full",
                  quants={"full": "reference", "tiny": "2-bit"}, artifact_name="fake-{quant}.bin",
                  adapter="fake_adapter", bundle_runner="gguf")
    monkeypatch.setitem(formats.FORMATS, "fake", fake)
    monkeypatch.setitem(REGISTRY, "export_fake", REGISTRY["export"])  # its export stage
    monkeypatch.setitem(runtimes.RUNTIMES, "fake_adapter", "tests.test_architecture:FakeRuntime")
    (tmp_path / "edge-fake.toml").write_text(
        'name = "edge-fake"\ndescription = "a fake format"\nformat = "fake"\nquant = "tiny"\nthreads = 1\n')
    target = load_target("edge-fake", tmp_path)
    assert target.runtime == "fakert"  # derived from the table
    assert (target.artifact(), target.artifact(fp=True)) == ("fake-tiny.bin", "fake-full.bin")
    export = next(s for s in PLAN if s.id == "export")
    assert export.stage_for(target) == "export_fake"
    assert REGISTRY["bench"].runtime(load_config(None), target).adapter == "fake_adapter"
    assert isinstance(runtimes.open_runtime("fake_adapter", "m", 64, 1), FakeRuntime)
    (tmp_path / "bad.toml").write_text(
        'name = "bad"\ndescription = "x"\nformat = "fake"\nquant = "Q4_K_M"\nthreads = 1\n')
    from pipeline.errors import UserError

    with pytest.raises(UserError, match="not a fake quantization; use one of full, tiny"):
        load_target("bad", tmp_path)


def test_every_format_names_real_parts() -> None:
    """Each built-in entry's export stage is registered, its adapter is in the runtime
    registry and its bundle runner is in the bundle's run.py."""
    from pipeline.formats import FORMATS
    from pipeline.measure.runtimes import RUNTIMES
    from pipeline.runkit.run import RUNNERS
    from pipeline.stages import REGISTRY

    for fmt in FORMATS.values():
        assert fmt.export_stage in REGISTRY and fmt.adapter in RUNTIMES
        assert fmt.bundle_runner in RUNNERS and fmt.fp in fmt.quants


class FakeRuntime:
    """The fake format's adapter (same constructor as every adapter)."""

    n_vocab = 1

    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        self.model = model


def test_stages_name_each_others_files_only_through_the_contracts() -> None:
    """A file one step writes for another is named once (pipeline.outputs, tasks.inputs);
    no stage spells such a name as a literal, so a rename cannot leave a reader behind."""
    from pipeline import outputs
    from pipeline.tasks import inputs

    shared = {v for m in (outputs, inputs) for k, v in vars(m).items()
              if k.isupper() and isinstance(v, str) and "." in v}
    assert {"rows.jsonl", "eval.jsonl", "prompt_format.json", "bench.json"} <= shared
    bad = {}
    for f in sorted((PIPELINE / "stages").glob("*.py")):
        literals = {n.value for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if literals & shared:
            bad[f.name] = sorted(literals & shared)
    assert not bad
