"""The files a stage writes for the steps after it: their names and readers, in one place.

A stage writes these names and a later step (or the CLI) reads them through this module,
never by a literal file name, so a rename happens once and a missing file or field fails
here with the file named. The JSON documents that cross a boundary are pydantic models:
the fields readers rely on are declared and checked; the rest is carried as written.

`report.json` carries `schema` (REPORT_SCHEMA): a report written by an older distill-edge
is refused in one line ("re-run the report step") instead of read through old-format
fallbacks.

Example:
    >>> from pipeline.outputs import BenchOutput
    >>> BenchOutput.model_validate({"rows": [{"role": "distilled", "label": "Q4_K_M"}]}).rows[0].role
    <Role.DISTILLED: 'distilled'>
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.measure.roles import Role

# teacher step
TEACHER_ROWS = "rows.jsonl"  # one answered request per line (train and unlabelled eval prompts)
TEACHER_FAILED = "failed.jsonl"  # requests that failed after the retries
TEACHER_STATS = "stats.json"  # rows, wall time, tokens/s, endpoints
# filter step
KEPT = "kept.jsonl"  # the training rows
DROPS = "drops.json"  # drop counts by reason (the data card's numbers)
# teacher_logits step
TRAINING_MODE = "decision.json"  # sequence or logits KD, and why
# distill step
DISTILL_SUMMARY = "summary.json"
TRAIN_LOG = "train_log.jsonl"
# bench steps (bench_teacher, bench_student, bench)
BENCH = "bench.json"
# judge step
JUDGE = "judge.json"
# report step
REPORT = "report.json"
REPORT_SCHEMA = 1  # bumped when a reader's field changes meaning or goes


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TeacherStats(_Doc):
    """The teacher step's stats.json (a measurement: left out of its output digest)."""

    rows: int
    failed: int
    prompt_tokens: int
    prefill_tokens: int
    completion_tokens: int
    rows_per_min: float | None
    decode_tok_s: float | None


class Drops(_Doc):
    """The filter step's drops.json: what the data card counts."""

    rows_in: int
    kept: int
    dropped: int
    drops_by_reason: dict[str, int]
    kept_teacher_metric: str
    kept_teacher_quality: float | None  # vs the train data's references, where it has them


class TrainingMode(_Doc):
    """The teacher_logits step's decision.json: which KD the distill step runs, and why."""

    mode: str  # "sequence" | "logits"
    reason: str


class TrainingSummary(_Doc):
    """The distill step's summary.json."""

    mode: str
    examples: int
    steps: int
    first_loss: float | None
    final_loss: float | None
    train_tokens_per_s: float | None
    precision: str
    precision_reason: str
    device: str


class BenchRow(_Doc):
    role: Role
    label: str


class BenchOutput(_Doc):
    rows: list[BenchRow]


class ShipDecision(_Doc):
    """The build's one decision (pipeline.measure.decision), as the report holds it."""

    ship: bool
    outcome: str
    exit_code: int
    sentence: str


class Verdict(_Doc):
    text: str
    case: str


class TaskInfo(_Doc):
    name: str
    kind: str
    metric: str


class Report(_Doc):
    report_schema: int = Field(alias="schema")
    target: str
    task: TaskInfo
    decision: ShipDecision
    verdict: Verdict
    bench: BenchOutput
    data: Drops
    teacher: TeacherStats
    training: TrainingSummary | None = None


M = TypeVar("M", bound=BaseModel)


class OutputError(ValueError):
    """A stage output (or a report) that is missing or does not hold what readers need."""


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path} is not valid JSON ({exc})") from None


def _checked(path: Path, data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OutputError(f"{path}: {where}: {first['msg']}") from None


def read_doc(path: Path, model: type[M]) -> M:
    """A JSON document checked against its model; anything else is one OutputError."""
    return _checked(path, _load(path), model)


def read_json(folder: Path, name: str, model: type[BaseModel] = _Doc) -> dict[str, Any]:
    """A stage's JSON output by its name here, checked against its model, as written."""
    data: dict[str, Any] = _load(folder / name)
    _checked(folder / name, data, model)
    return data


def read_bench(folder: Path) -> dict[str, Any]:
    """A bench step's bench.json, its rows checked (role, label), as written."""
    return read_json(folder, BENCH, BenchOutput)


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """report.json, with its schema number, checked against what its readers need."""
    doc = {"schema": REPORT_SCHEMA, **report}
    Report.model_validate(doc)  # the writer keeps the readers' contract
    (folder / REPORT).write_text(json.dumps(doc, indent=2) + "\n")


def read_report(folder: Path) -> Report:
    """A build's report.json; one written by an older distill-edge is an OutputError that
    says to re-run the report step."""
    path = folder / REPORT
    data = _load(path)
    schema = data.get("schema") if isinstance(data, dict) else REPORT_SCHEMA  # else: _checked says
    if schema != REPORT_SCHEMA:
        raise OutputError(f"{path} was written by another distill-edge version (report "
                          f"schema {schema}, this one reads {REPORT_SCHEMA}): re-run the "
                          "report step (`distill-edge build` with the same target re-runs "
                          "it from cache)")
    return _checked(path, data, Report)
