"""Report stage: gather every stage's numbers into report.json, report.md and report.html.

Reads only its inputs (stage output folders and their `_meta.json`), never reruns work.
Adds what no single stage knows: agreement with the teacher, attribution of the metric
change to each step (distill vs quantize), the quality gate of the target, and the
verdict — was distillation worth it, given the user's quality bar and scale ([goal]).

Example:
    distill-edge build --target cpu-int4
    xdg-open build/cpu-int4/report.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from pipeline.cache import file_sha256, library_versions, read_jsonl, read_meta
from pipeline.config import BuildConfig
from pipeline.gate import GateSettings, gate_settings, ship_decision
from pipeline.measure.bench import BENCH_STEPS, merged_answers
from pipeline.measure.quant_mix import QuantMix
from pipeline.measure.roles import ORDER, Role
from pipeline.outputs import (
    DEVICE,
    DROPS,
    JUDGE,
    TEACHER_STATS,
    TRAIN_LOG,
    DeviceBench,
    Drops,
    EvalSetSummary,
    JudgeOutput,
    ReportSummary,
    TeacherStats,
    TrainingSummary,
    read_bench,
    read_doc,
    write_report,
)
from pipeline.stage import Runtime, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import EVAL_FILE, TRAIN_FILE, read_eval

REPORT_LIBRARIES = ("torch", "transformers", "llama-cpp-python", "gguf", "tokenizers",
                    "onnxruntime", "onnxruntime-genai")


class ReportSettings(GateSettings):
    """The user's goal (the verdict) and the target's gate (pipeline.gate)."""

    target: str
    benchmarked_on: str
    task: TaskSpec
    min_quality: float | None  # [goal]: None = relative to the teacher
    requests_per_day: int
    latency_budget_s: float
    quant: str = ""


# Bench rows and answers stay JSON records here: a row's metric columns are named by the
# task and an answer table's columns by the rows' roles (BenchOutput checks the fixed fields).
Rows = list[dict[str, Any]]


class CurvePoint(TypedDict, total=False):
    step: int
    loss: float  # a training step's
    eval_loss: float  # a held-out evaluation's
    eval_kl: float


def _curve(log_path: Path, max_points: int = 300) -> list[CurvePoint]:
    """The training log, thinned to at most max_points for the plot."""
    if not log_path.is_file():
        return []
    points = read_jsonl(log_path)
    train = [p for p in points if "loss" in p]
    stride = max(1, len(train) // max_points)
    evals = [CurvePoint(**{k: p[k] for k in ("step", "eval_loss", "eval_kl") if k in p})
             for p in points if "eval_loss" in p]
    return [CurvePoint(step=p["step"], loss=p["loss"]) for p in train[::stride]] + evals


def _judge(folder: Path | None, rows: Rows) -> JudgeOutput | None:
    """The judge step's outcome (None when it was off); each judged row gets its W/T/L cell."""
    path = folder / JUDGE if folder is not None else None
    if path is None or not path.is_file():
        return None
    judge = read_doc(path, JudgeOutput)
    if not judge.enabled:
        return None
    for row in rows:
        if counts := judge.roles.get(row["role"]):
            row["judge"] = f"{counts['win']}/{counts['tie']}/{counts['loss']}"
            row["judge_win_rate"] = counts["win_rate"]
    return judge


def _device(folder: Path | None) -> dict[str, Any] | None:
    """The bench_device step's device.json (None without a [device])."""
    path = folder / DEVICE if folder is not None else None
    return read_doc(path, DeviceBench).model_dump() if path and path.is_file() else None


def _extra_columns(rows: Rows, judge: JudgeOutput | None) -> list[list[str]]:
    """Columns beyond the kind's own: invented spans (tasks with copy_fields) and the judge."""
    extra = []
    if any(r.get("ci") for r in rows):
        extra.append(["95% interval", "ci", "{}"])
    if any(r.get("invented") is not None for r in rows):
        extra.append(["invented spans", "invented", "{:.3f}"])
    if judge:
        extra.append(["judged vs teacher W/T/L", "judge", "{}"])
    return extra


def _quant_mix(ctx: StageContext[ReportSettings], bench: dict[str, Any]) -> QuantMix | None:
    """The shipped GGUF's or OpenVINO IR's real type mix (None for other formats): the
    bench's shipped row's file — the encoding search's choice where the target has one."""
    from pipeline.measure.quant_mix import gguf_mix, openvino_mix
    from pipeline.measure.search import shipped_quant, shipped_row

    shipped = shipped_row(bench["rows"])
    if shipped is None:
        return None
    path = ctx.inputs["export"] / shipped["file"]
    quant = shipped_quant(bench, ctx.settings.quant)
    if path.suffix == ".gguf" and path.is_file():
        return gguf_mix(path, quant)
    if (path / "openvino_model.xml").is_file():
        return openvino_mix(path, quant)
    return None


def _bar(s: ReportSettings, rows: Rows) -> float | None:
    """The verdict's bar for the small model used directly: the user's, else the teacher's
    metric less the allowed gap (None without either)."""
    if s.min_quality is not None:
        return s.min_quality
    teacher = next((r for r in rows if r["role"] == Role.TEACHER), None)
    gap = s.max_teacher_gap if s.max_teacher_gap is not None else 0.0
    return None if teacher is None else round(teacher[s.task.primary] - gap, 4)


def build_report(ctx: StageContext[ReportSettings]) -> dict[str, Any]:
    """The report document from the stage inputs, as report.json holds it (write_report checks
    it against pipeline.outputs.Report)."""
    from pipeline.measure.quality import greedy_agreement, teacher_agreement
    from pipeline.measure.uncertainty import add_intervals, add_other_intervals, labels_comparison
    from pipeline.measure.verdict import attribution, decide, with_decision
    from pipeline.report.render import environment

    s = ctx.settings
    task, metric = make_task(s.task), s.task.primary
    benches = {step: read_bench(ctx.inputs[step]) for step in BENCH_STEPS}
    bench = {**benches["bench"], "rows": sorted((r for b in benches.values() for r in b["rows"]),
                                                key=lambda r: ORDER.index(r["role"]))}
    answers = merged_answers([ctx.inputs[step] for step in BENCH_STEPS])
    agreement = teacher_agreement(answers, task)
    same = greedy_agreement(answers, Role.DISTILLED_TORCH)
    for row in bench["rows"]:
        row["teacher_agreement"] = agreement.get(row["role"])
        if row["role"] in same:
            row["greedy_agreement"] = same[row["role"]]
    judge = _judge(ctx.inputs.get("judge"), bench["rows"])
    walls = {role: meta["wall_s"] for role, folder in ctx.inputs.items()
             if folder.is_dir() and (meta := read_meta(folder))}
    distill_meta = read_meta(ctx.inputs["distill"]) or {}
    training = TrainingSummary.model_validate(distill_meta["summary"]) if distill_meta else None
    eval_meta = read_meta(ctx.inputs["eval"])
    eval_set = EvalSetSummary.model_validate(eval_meta["summary"]) if eval_meta else None
    eval_rows = read_eval(ctx.inputs["eval"] / EVAL_FILE)
    decision = ship_decision(s, task, bench["rows"], answers, eval_rows)
    verdict = with_decision(decide(bench["rows"], _bar(s, bench["rows"]), s.requests_per_day,
                                   s.latency_budget_s, metric), decision)
    attributed = attribution(bench["rows"], metric)
    add_intervals(task, metric, bench["rows"], answers, eval_rows, attributed)
    add_other_intervals(task, bench["rows"], answers, eval_rows)
    return {
        "target": s.target,
        "benchmarked_on": s.benchmarked_on,
        "task": {"name": s.task.name, "kind": s.task.kind, "metric": metric,
                 "columns": [list(c) for c in task.columns] + _extra_columns(bench["rows"], judge),
                 "references": eval_set.references if eval_set else "data",
                 "eval_rows": eval_set.rows if eval_set else None},
        "bench": bench,
        "verdict": verdict,
        "attribution": attributed,
        "judge": judge.model_dump() if judge else None,
        "quant_mix": _quant_mix(ctx, bench),
        "device": _device(ctx.inputs.get("device")),
        "labels": labels_comparison(task, answers, eval_rows),
        "decision": decision,
        "data": read_doc(ctx.inputs["filter"] / DROPS, Drops).model_dump(),
        "teacher": read_doc(ctx.inputs["teacher"] / TEACHER_STATS, TeacherStats).model_dump(),
        "training": training.model_dump() if training else None,
        "training_curve": _curve(ctx.inputs["distill"] / TRAIN_LOG),
        "seeds": {"teacher": (read_meta(ctx.inputs["teacher"]) or {}).get("settings", {}).get("seed"),
                  "distill": distill_meta.get("settings", {}).get("seed"),
                  # [distill] seeds > 1: every seed's fp32 student score, the shipped one
                  "distill_runs": (json.loads(ctx.inputs["seed_runs"].read_text())
                                   if "seed_runs" in ctx.inputs else None)},
        "datasets": {"train": file_sha256(ctx.inputs["prompts"] / TRAIN_FILE),
                     "eval": file_sha256(ctx.inputs["eval"] / EVAL_FILE)},
        "stage_wall_s": walls,
        "environment": environment(),
        "libraries": library_versions(REPORT_LIBRARIES),
    }


class ReportStage:
    name = "report"
    libraries = REPORT_LIBRARIES + ("matplotlib",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> ReportSettings:
        return ReportSettings(
            target=target.name, benchmarked_on=target.benchmarked_on, task=config.task.spec,
            **config.goal.model_dump(exclude={"max_teacher_gap"}),
            **gate_settings(config, target), quant=target.quant)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[ReportSettings]) -> ReportSummary:
        from pipeline.report.render import render_html, render_markdown

        report = build_report(ctx)
        write_report(ctx.out_dir, report)
        (ctx.out_dir / "report.md").write_text(render_markdown(report))
        (ctx.out_dir / "report.html").write_text(render_html(report))
        ctx.log(report["verdict"]["text"])
        return ReportSummary(rows=len(report["bench"]["rows"]), verdict=report["verdict"]["case"],
                             ship=report["decision"]["ship"])
