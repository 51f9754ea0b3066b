"""Bench stage: quality and latency of the teacher, the undistilled base and the student.

Rows, all on the same eval prompts, threads and context, each in its own fresh process
with a warm-up generation first. Two rows depend on no target and are cached steps of their
own, run once for every target: the teacher (`bench_teacher`, its few-shot prompt) and the
distilled fp32 student on torch (`bench_student`, the HF folder training wrote). Per target:
  base as F16 GGUF and through the same quantization (the student's short prompt) · the same
  base given the teacher's few-shot prompt (the small model used directly, at its best) ·
  distilled F16 GGUF · distilled quantized GGUF (ONNX targets: fp32 and quantized ONNX).
Quality is the task metric against the eval references; latency is TTFT, prefill and
decode tokens/s, load time and peak RSS of the child process; size is the file size.
Scores: the first `score_rows` eval answers, teacher-forced after the student's prompt, give
each student-vocabulary row a perplexity, and its mean KL and top-1 agreement vs the fp32
student's log-probs (`bench_student` leaves them in its output).

Example:
    distill-edge build --target cpu-int4
    cat build/cache/bench/*/bench.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from pipeline.config import BuildConfig
from pipeline.formats import FORMATS
from pipeline.gate import GateSettings, gate_settings
from pipeline.measure.bench import REFERENCE_FILE, REMEASURE, RowSpec
from pipeline.measure.roles import BASE_ROLES, Role, twin
from pipeline.outputs import BENCH, BenchSummary, read_bench
from pipeline.prompts import ChatPrompt
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import EVAL_FILE, read_eval


class BenchSettings(Settings):
    """The three bench steps' settings; each sets only the fields it reads (its key)."""

    task: TaskSpec
    threads: int
    n_ctx: int
    warmup: int
    max_tokens: int
    synthetic: dict[str, int] | None  # llama-bench-style pp/tg tests; None = skipped
    latency_prompts: int = 0  # timed one at a time; the rest answered batched (0 = all timed)
    teacher_prompt: ChatPrompt
    include_teacher: bool = False  # bench_teacher
    score_rows: int = 0  # bench_student, bench
    student_prompt: ChatPrompt | None = None  # bench_student, bench
    torch_row: bool = False  # bench_student
    artifact: str = ""  # bench: the target's export and its unquantized reference
    fp_artifact: str = ""
    quant_label: str = ""
    fp_label: str = ""
    grammar: str = ""  # bench: the task grammar the distilled rows' twins decode under
    constrained: bool = False  # bench: the target ships constrained answers
    grammar_skipped: str = ""  # bench: why there are no grammar rows (when asked for)
    # bench: the base rows stop below the verdict's bar — [goal] min_quality, else the
    # teacher's metric (bench_teacher) less max_teacher_gap; both None: they answer all
    stop_goal: float | None = None
    stop_teacher_gap: float | None = None
    # bench, a target with `encodings`: (type, artifact) candidates to search, and the limits
    # each is decided by (the report's: pipeline.gate)
    encodings: list[tuple[str, str]] = []
    gate: GateSettings | None = None


class BenchRuntime(Runtime):
    """How contention is handled and which adapter runs the artifacts: not what is measured."""

    remeasure: int = REMEASURE
    adapter: str | None = None  # bench: the format's runtime adapter


# The settings each bench step sets, in groups (only what a step sets is in its key).
class _Common(TypedDict):
    task: TaskSpec
    threads: int
    n_ctx: int
    warmup: int
    max_tokens: int
    latency_prompts: int
    synthetic: dict[str, int] | None
    teacher_prompt: ChatPrompt


class _Student(TypedDict):
    score_rows: int
    student_prompt: ChatPrompt


class _Grammar(TypedDict, total=False):
    grammar: str
    constrained: bool
    grammar_skipped: str


class _Stop(TypedDict, total=False):
    stop_goal: float | None
    stop_teacher_gap: float | None


def _common(config: BuildConfig, target: Target) -> _Common:
    b = config.bench
    return _Common(
        task=config.task.spec, threads=target.threads,
        n_ctx=max(target.n_ctx, config.teacher.n_ctx), warmup=target.bench_warmup,
        max_tokens=b.max_tokens, latency_prompts=b.latency_prompts,
        synthetic=({"pp": b.pp_tokens, "tg": b.tg_tokens, "repeats": b.repeats}
                   if b.repeats else None),
        teacher_prompt=config.task.teacher_prompt)


def _stop(config: BuildConfig) -> _Stop:
    goal = config.goal
    if not config.bench.stop_hopeless:
        return {}
    return ({"stop_goal": goal.min_quality} if goal.min_quality is not None
            else {"stop_teacher_gap": goal.max_teacher_gap})


def _stop_bar(ctx: StageContext[BenchSettings]) -> float | None:
    """The bar a base row stops below (the verdict's bar for the small model used directly)."""
    s = ctx.settings
    if s.stop_goal is not None or s.stop_teacher_gap is None:
        return s.stop_goal
    folder = ctx.inputs.get("bench_teacher")
    if folder is None or not (folder / BENCH).is_file():
        return None
    rows = read_bench(folder)["rows"]
    teacher = next((r for r in rows if r["role"] == Role.TEACHER), None)
    return None if teacher is None else round(teacher[s.task.primary] - s.stop_teacher_gap, 4)


def _student(config: BuildConfig) -> _Student:
    return _Student(score_rows=config.bench.score_rows, student_prompt=config.task.student_prompt)


def _student_rows(ctx: StageContext[BenchSettings, BenchRuntime], reference: str | None,
                  shipped: tuple[str, str] | None = None) -> list[RowSpec]:
    """The target's student rows, in report order; `score` marks the rows scored
    teacher-forced (student prompt and vocabulary), `reference` the one the others are held
    to when no fp32 torch reference exists (`reference` = that role, or None). `shipped`:
    the distilled artifact and its type when the encoding search picked another."""
    s = ctx.settings
    teacher_p, student_p = s.teacher_prompt, s.student_prompt
    base, student = ctx.inputs["base_export"], ctx.inputs["student_export"]
    fp, quant = s.fp_label, s.quant_label
    artifact, shipped_quant = shipped or (s.artifact, quant)
    ship = s.constrained  # the target's own distilled rows decode under the grammar
    rows = [
        (f"base {fp}", Role.BASE_FP, base / s.fp_artifact, student_p, False),
        (f"base {quant}", Role.BASE, base / s.artifact, student_p, False),
        (f"base {quant} + few-shot prompt", Role.BASE_FEWSHOT, base / s.artifact, teacher_p, False),
        (f"distilled {fp}", Role.DISTILLED_FP, student / s.fp_artifact, student_p, ship),
        (f"distilled {shipped_quant}", Role.DISTILLED, student / artifact, student_p, ship),
    ]
    # each distilled artifact decoded the other way too; these twins are not scored
    # (teacher-forced log-probs do not depend on how answers are decoded)
    twins = [(label + (", free decoding" if ship else ""), twin(role, under_grammar=not ship),
              path, p, not ship) for label, role, path, p, _ in rows[3:]] if s.grammar else []
    # the base rows and a constrained target's free twins are not shipped: their untimed
    # answers may be decoded batched; the base rows stop once they clearly cannot reach the bar
    stop = _stop_bar(ctx)
    return [{"label": label + (" + grammar" if under else ""), "role": role, "model": path,
             "prompt": p, "runtime": ctx.runtime.adapter,
             "score": bool(s.score_rows) and p is student_p and i < len(rows),
             "reference": bool(s.score_rows) and role == reference,
             "batched": role in BASE_ROLES or (ship and i >= len(rows)),
             **({"stop_below": stop} if role in BASE_ROLES and stop is not None else {}),
             **({"grammar": s.grammar} if under else {})}
            for i, (label, role, path, p, under) in enumerate(rows + twins)]


def _grammar(config: BuildConfig, target: Target) -> _Grammar:
    """The grammar-pair settings: the task's grammar, or why there is none."""
    from pipeline.constrain import NoGrammar, grammar_for, shipped_grammar

    task = config.task
    shipped, why = shipped_grammar(task.spec, task.date_fields, target.constrained)
    if shipped:
        return {"grammar": shipped, "constrained": True}
    if why:  # a constrained target, a task without a grammar: free decoding ships
        return {"grammar_skipped": why}
    if not config.bench.grammar_pair:
        return {}
    if not target.fmt.constrained_decoding:
        return {"grammar_skipped": f"the {target.format} runtime cannot constrain decoding yet"}
    try:
        return {"grammar": grammar_for(task.spec, task.date_fields)}
    except NoGrammar as exc:
        return {"grammar_skipped": exc.why}


def _search(config: BuildConfig, target: Target) -> dict[str, Any]:
    """A target with `encodings`: the candidates (type, artifact) and the decision's limits."""
    if not target.encodings:
        return {}
    return {"encodings": [(q, target.fmt.artifact(q)) for q in target.candidates()],
            "gate": GateSettings(**gate_settings(config, target))}


def run_rows(ctx: StageContext[BenchSettings, BenchRuntime], rows: list[RowSpec],
             reference: Path | None = None, keep_reference: bool = False,
             out_dir: Path | None = None) -> BenchSummary:
    """The stage's eval rows through the bench's row loop (pipeline.measure.bench), into the
    stage's folder (or `out_dir`, a part of it)."""
    from pipeline.measure.bench import bench_rows, score_texts

    s = ctx.settings
    eval_rows = read_eval(ctx.inputs["eval"] / EVAL_FILE)
    texts = (score_texts(Path(ctx.inputs["student"]), s.student_prompt, eval_rows, s.score_rows)
             if s.student_prompt and any(r.get("score") for r in rows) else [])
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = bench_rows(rows, eval_rows, out_dir or ctx.out_dir, make_task(s.task),
                        threads=s.threads, n_ctx=s.n_ctx,
                        max_tokens=s.max_tokens, warmup=s.warmup, synthetic=s.synthetic,
                        latency_prompts=s.latency_prompts,
                        texts=texts, reference=reference, keep_reference=keep_reference,
                        remeasure=ctx.runtime.remeasure, log=ctx.log)
    return BenchSummary(scores={r["role"]: r[s.task.primary] for r in result["rows"]})


def _encoding(s: BenchSettings, quant: str) -> tuple[str, str]:
    """A candidate type's (artifact, row label): the label is the type and the format's suffix."""
    return dict(s.encodings)[quant], quant + s.quant_label.removeprefix(s.encodings[0][0])


def _candidate(ctx: StageContext[BenchSettings, BenchRuntime], quant: str, ref_role: Role | None,
               reference: Path, parts: Path, known: list[Path]) -> dict[str, Any]:
    """One candidate type measured as the shipped row (its own part folder) and decided
    with the build's decision against the rows already known."""
    from pipeline.gate import ship_decision
    from pipeline.measure.bench import merged_answers

    s = ctx.settings
    assert s.gate is not None  # set with encodings (_search)
    row = next(r for r in _student_rows(ctx, ref_role, _encoding(s, quant))
               if r["role"] == Role.DISTILLED)
    run_rows(ctx, [row], reference=reference, out_dir=parts / quant)
    rows = [r for folder in [*known, parts / quant] for r in read_bench(folder)["rows"]]
    decision = ship_decision(s.gate, make_task(s.task), rows,
                             merged_answers([*known, parts / quant]),
                             read_eval(ctx.inputs["eval"] / EVAL_FILE))
    mine = rows[-1]
    ctx.log(f"encoding {quant}: {decision['outcome']} — {decision['sentence']}")
    return {"file": mine["file"], "file_mb": mine["file_mb"], "kl": mine.get("kl_vs_reference"),
            "top1": mine.get("top1_agreement"), "metric": mine[s.task.primary],
            "outcome": decision["outcome"], "ship": decision["ship"],
            "sentence": decision["sentence"],
            "checks": [{k: c.get(k) for k in ("check", "outcome", "value", "ci", "prompts")}
                       for c in decision["checks"]]}


def searched(ctx: StageContext[BenchSettings, BenchRuntime], ref_role: Role | None,
             reference: Path | None) -> BenchSummary:
    """A target with `encodings`: the unquantized row first, then the candidate types
    smallest-first until one passes (pipeline.measure.search), then the other rows around
    the one that ships; one bench.json (with the search's table) from the parts."""
    from pipeline.measure.quant_mix import gguf_mix
    from pipeline.measure.search import chosen, merge_benches, search

    s, parts = ctx.settings, ctx.out_dir / "search"
    fp_row = [r for r in _student_rows(ctx, ref_role) if r["role"] == Role.DISTILLED_FP]
    run_rows(ctx, fp_row, reference=reference, keep_reference=True, out_dir=parts / "fp")
    reference = reference or parts / "fp" / REFERENCE_FILE
    known = [ctx.inputs["bench_teacher"], ctx.inputs["student_bench"], parts / "fp"]
    sizes = [(q, gguf_mix(ctx.inputs["student_export"] / a, q)["bits_per_weight"])
             for q, a in s.encodings]
    tried = search(sizes, lambda q: _candidate(ctx, q, ref_role, reference, parts, known))
    ship = chosen(tried, own=s.encodings[0][0])
    rest = [r for r in _student_rows(ctx, ref_role, _encoding(s, ship))
            if r["role"] not in (Role.DISTILLED_FP, Role.DISTILLED)]
    run_rows(ctx, rest, reference=reference, out_dir=parts / "rest")
    result = merge_benches([parts / "rest", parts / "fp", parts / ship], ctx.out_dir,
                           {"search": {"shipped": ship, "candidates": tried}})
    return BenchSummary(scores={r["role"]: r[s.task.primary] for r in result["rows"]})


class BenchTeacherStage:
    """The teacher's row alone: it depends on neither the student nor the quantization, so
    one run serves every target and every retrained student."""

    name = "bench_teacher"
    libraries = ("llama-cpp-python",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> BenchSettings:
        # the row runs the teacher's GGUF; a remote or HF teacher is not benchmarked
        return BenchSettings(**_common(config, target), include_teacher=(
            config.bench.include_teacher and config.teacher.backend == "llama_cpp"))

    def runtime(self, config: BuildConfig, target: Target) -> BenchRuntime:
        return BenchRuntime(remeasure=config.bench.remeasure)

    def run(self, ctx: StageContext[BenchSettings, BenchRuntime]) -> BenchSummary:
        s = ctx.settings
        # not shipped, and served batched at scale (as the teacher stage runs it): its
        # untimed answers are decoded together
        rows = [RowSpec(label="teacher", role=Role.TEACHER, model=ctx.inputs["teacher_model"],
                        runtime=FORMATS["gguf"].adapter, prompt=s.teacher_prompt, batched=True)]
        return run_rows(ctx, rows if s.include_teacher else [])


class BenchStudentStage:
    """The fp32 student on torch (the HF folder training wrote): the reference every export
    is held to. Like the teacher's row it depends on no target, so one run serves them all;
    its log-probs stay in its output (float16) for the targets' bench steps."""

    name = "bench_student"
    libraries = ("torch", "transformers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> BenchSettings:
        return BenchSettings(**_common(config, target), **_student(config),
                             torch_row=config.bench.torch_row)

    def runtime(self, config: BuildConfig, target: Target) -> BenchRuntime:
        return BenchRuntime(remeasure=config.bench.remeasure)

    def run(self, ctx: StageContext[BenchSettings, BenchRuntime]) -> BenchSummary:
        s = ctx.settings
        assert s.student_prompt is not None  # bench_student sets it (_student)
        row = RowSpec(label="distilled fp32 (torch)", role=Role.DISTILLED_TORCH,
                      model=ctx.inputs["student"], runtime="torch", prompt=s.student_prompt,
                      score=bool(s.score_rows), reference=bool(s.score_rows))
        return run_rows(ctx, [row] if s.torch_row else [], keep_reference=True)


class BenchLabelsStage:
    """The student fine-tuned on the user's labels alone (distill_labels), fp32 on torch:
    "fine-tuned on your labels", beside the distilled student. No labelled train rows: no row."""

    name = "bench_labels"
    libraries = ("torch", "transformers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> BenchSettings:
        return BenchSettings(**_common(config, target), **_student(config))

    def runtime(self, config: BuildConfig, target: Target) -> BenchRuntime:
        return BenchRuntime(remeasure=config.bench.remeasure)

    def run(self, ctx: StageContext[BenchSettings, BenchRuntime]) -> BenchSummary:
        s = ctx.settings
        assert s.student_prompt is not None  # set (_student)
        trained = (ctx.inputs["student"] / "config.json").is_file()  # else distill_labels skipped
        row = RowSpec(label="fine-tuned on your labels, fp32 (torch)", role=Role.LABELS_TORCH,
                      model=ctx.inputs["student"], runtime="torch", prompt=s.student_prompt)
        return run_rows(ctx, [row] if trained else [])


class BenchStage:
    name = "bench"
    libraries = ("llama-cpp-python", "torch", "transformers", "onnxruntime-genai", "llguidance")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> BenchSettings:
        fmt = target.fmt
        return BenchSettings(**_common(config, target), **_student(config),
                             artifact=target.artifact(), fp_artifact=target.artifact(fp=True),
                             quant_label=target.quant + fmt.label, fp_label=fmt.fp + fmt.label,
                             **_grammar(config, target), **_stop(config), **_search(config, target))

    def runtime(self, config: BuildConfig, target: Target) -> BenchRuntime:
        # the format's runtime adapter: a function of the artifact names already in the key
        return BenchRuntime(remeasure=config.bench.remeasure, adapter=target.fmt.adapter)

    def run(self, ctx: StageContext[BenchSettings, BenchRuntime]) -> BenchSummary:
        if ctx.settings.grammar_skipped:
            ctx.log(f"no grammar rows: {ctx.settings.grammar_skipped}")
        # Held to the fp32 torch student when bench_student measured it, else to the F16/fp32 export.
        ref = ctx.inputs["student_bench"] / REFERENCE_FILE
        reference = ref if ref.is_file() else None
        ref_role = None if reference else Role.DISTILLED_FP
        if ctx.settings.encodings:
            return searched(ctx, ref_role, reference)
        return run_rows(ctx, _student_rows(ctx, ref_role), reference=reference)
