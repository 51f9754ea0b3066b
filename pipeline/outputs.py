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
import shutil
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.cache import read_jsonl
from pipeline.measure.roles import Role
from pipeline.stage import Summary

# teacher_check step
TEACHER_CHECK = "check.json"  # the teacher's metric on a labelled sample, with its interval
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
PROMPT_FORMAT = "prompt_format.json"  # the trained messages; every export carries it on
TRAIN_LOG = "train_log.jsonl"
# bench steps (bench_teacher, bench_student, bench)
BENCH = "bench.json"
ANSWERS = "answers.jsonl"  # every row's answer per eval prompt (and the teacher_check's sample)
# judge step
JUDGE = "judge.json"
DEVICE = "device.json"  # the shipped artifact timed on the build's [device] (pipeline.device)
# report step
REPORT = "report.json"
REPORT_SCHEMA = 2  # bumped when a reader's field changes meaning or goes (2: typed teacher stats)


class TeacherRow(TypedDict):
    """One teacher request as the teacher step writes it: a line of TEACHER_ROWS (answered)
    or of TEACHER_FAILED (`error` instead of the response and token counts)."""

    key: str  # "<id>#<sample>"
    id: str
    split: str  # "train" | "eval" (an unlabelled eval prompt: its answer labels it)
    sample: int
    prompt: str
    reference: Any  # the task's reference, where the data has one
    attempts: int
    response: NotRequired[str]
    prompt_tokens: NotRequired[int]
    prefill_tokens: NotRequired[int]
    completion_tokens: NotRequired[int]
    error: NotRequired[str]


def read_teacher_rows(folder: Path, name: str = TEACHER_ROWS) -> list[TeacherRow]:
    """The teacher step's rows (TEACHER_ROWS, or TEACHER_FAILED); none when the file is absent."""
    path = folder / name
    return read_jsonl(path) if path.is_file() else []  # type: ignore[return-value]


class _Doc(Summary):
    """A document whose fields readers rely on are declared; the rest is carried as written."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class PromptsSummary(Summary):
    """The prompts step: how many prompts went where."""

    train: int
    eval: int
    eval_sets: dict[str, int] | None = None  # prompts per eval set, where the data names sets
    eval_with_reference: int
    held_out: int  # train prompts held out as the eval split (no eval data given)
    overlap_dropped: int


class TeacherCheck(Summary):
    """The teacher_check step's check.json: the teacher's metric on a labelled sample."""

    enabled: bool
    prompts: int = 0
    metric: str | None = None
    value: float | None = None
    ci: tuple[float, float] | None = None  # 95% interval
    valid: float | None = None  # share of its answers the task parses (the rest score 0)
    constrained: bool = False  # it answered under the task grammar ([teacher] constrained)


class TeacherStats(Summary):
    """The teacher step's stats.json (a measurement: left out of its output digest)."""

    rows: int
    rows_this_run: int
    failed: int
    wall_s: float
    prompt_tokens: int
    prefill_tokens: int
    completion_tokens: int
    rows_per_min: float | None = None  # None: no wall time to divide by
    decode_tok_s: float | None = None
    served_by: dict[str, int] | None = None  # requests per endpoint, behind several


class EvalSetSummary(Summary):
    """The eval_set step: where the eval references come from."""

    rows: int
    references: str  # "data" | "teacher" | "mixed"
    from_teacher: int
    dropped_no_valid_teacher_answer: int


class Drops(Summary):
    """The filter step's drops.json: what the data card counts."""

    rows_in: int
    kept: int
    dropped: int
    drops_by_reason: dict[str, int]
    kept_teacher_metric: str
    kept_teacher_quality: float | None  # vs the train data's references, where it has them


class ModelInfo(Summary):
    """The student_base step: the plain HF copy of the student."""

    architecture: str
    parameters: int
    vocab_size: int


class LabelsSummary(Summary):
    """The labels step: how many labelled train rows the fine-tuned-on-labels student gets."""

    rows: int
    skipped: str | None = None  # why there is no such student


class TrainingMode(Summary):
    """The teacher_logits step's decision.json: which KD the distill step runs, and why."""

    mode: str  # "sequence" | "logits"
    reason: str
    shared_vocab: int | None = None
    source: str
    # logits KD from cached teacher scores: what was scored
    train_rows: int | None = None
    eval_rows: int | None = None
    positions_scored: int | None = None
    top_k: int | None = None
    score_wall_s: float | None = None


class ExportSummary(Summary):
    """An export step (GGUF, ONNX, OpenVINO): the shipped artifact beside its unquantized
    reference in the same format (F16 GGUF, fp32 ONNX / IR)."""

    artifact: str  # a file or folder name in the step's output
    quant: str
    bytes: int
    reference_bytes: int
    parameters: int | None = None  # as the runtime counts them (GGUF)
    max_logit_diff: float | None = None  # the reference export vs the torch student (OpenVINO)
    bits_per_weight: float | None = None  # the artifact's real mix (GGUF, OpenVINO)
    # OpenVINO: parameters and bytes per element type, as NNCF left them
    weight_types: dict[str, dict[str, int]] | None = None


class BenchSummary(Summary):
    """A bench step: each row's primary metric, by role."""

    scores: dict[str, float | None]


class JudgeSummary(Summary):
    """The judge step (judge.json holds the per-role tallies besides)."""

    enabled: bool
    rows: int = 0
    judge: str | None = None
    pairs: int = 0
    calls: int = 0
    unreadable: int = 0


class JudgeOutput(JudgeSummary):
    """The judge step's judge.json: per judged role, wins / ties / losses and the win rate."""

    roles: dict[str, dict[str, float]] = {}


class DeviceSummary(Summary):
    """The bench_device step (off without a [device])."""

    enabled: bool
    address: str | None = None  # the ssh address it ran on
    decode_tok_s: float | None = None


class DeviceBench(DeviceSummary):
    """The bench_device step's device.json: the shipped artifact's latency on the device."""

    device: dict[str, Any] = {}  # pipeline.runkit.bench.device_facts: CPU, flags, runtime…
    prompts: int = 0
    load_s: float | None = None
    ttft_mean_s: float | None = None
    total_mean_s: float | None = None
    peak_rss_mb: float | None = None
    host_runtime_version: str | None = None  # the build host's version of the same runtime
    same_answers: int | None = None  # of `prompts`, identical to the build host's bench answers
    results: list[dict[str, Any]] = []  # per prompt: response, ttft_s, decode_s, pieces


class ReportSummary(Summary):
    rows: int
    verdict: str
    ship: bool


class BundleSummary(Summary):
    files: list[str]
    skipped: str | None = None  # why nothing was bundled


class TrainingSummary(_Doc):
    """The distill step's summary.json (a step with no rows to train on: only `skipped`)."""

    mode: str = ""
    examples: int = 0
    steps: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    train_tokens_per_s: float | None = None
    precision: str = ""
    precision_reason: str = ""
    device: str = ""
    skipped: str | None = None
    first_eval_loss: float | None = None  # held-out loss before and after training
    final_eval_loss: float | None = None


class BenchRow(_Doc):
    role: Role
    label: str
    file: str = ""  # the artifact's file or folder name


class BenchOutput(_Doc):
    rows: list[BenchRow]
    threads: int | None = None


class DecisionCheck(_Doc):
    outcome: str  # "pass" | "fail" | "undecided"
    text: str


class ShipDecision(_Doc):
    """The build's one decision (pipeline.measure.decision), as the report holds it."""

    ship: bool
    outcome: str
    exit_code: int
    sentence: str
    checks: list[DecisionCheck] = []


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
    quant_mix: dict[str, Any] | None = None  # pipeline.measure.quant_mix: the shipped file's types
    device: DeviceBench | None = None  # the shipped artifact timed on the [device], if any


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


def write_doc(path: Path, doc: BaseModel) -> None:
    """A typed document as JSON; fields that are None are left out (so a nullable field
    read back by read_doc needs a None default)."""
    path.write_text(json.dumps(doc.model_dump(mode="json", exclude_none=True), indent=2,
                               ensure_ascii=False) + "\n", encoding="utf-8")


def carry_prompt_format(model_dir: Path, out_dir: Path) -> None:
    """Copy the trained messages (PROMPT_FORMAT) beside an export, where the model has them."""
    if (model_dir / PROMPT_FORMAT).is_file():
        shutil.copyfile(model_dir / PROMPT_FORMAT, out_dir / PROMPT_FORMAT)


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
