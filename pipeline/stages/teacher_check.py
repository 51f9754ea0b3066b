"""Teacher-first check: before the teacher labels the train prompts, it answers a sample of
the labelled eval prompts, and its primary metric (with a 95 % bootstrap interval) is held to
the user's bar. The student learns from the teacher's answers, so a teacher clearly below the
bar means a build that cannot ship: the runner stops it here (exit 3), before the labelling,
training and benchmarking it would spend, and says what to try; `build --force` goes on.

setup: the eval prompts that carry a reference; a fixed random sample of `sample` of them
       (all when fewer). Runs only with a bar of the user's own ([goal] min_quality): a build
       held to its teacher cannot fail on the teacher.
run:   the teacher answers them the way the teacher stage asks (same prompt, backend,
       batching); answers.jsonl keeps every answer.
cleanup: check.json — value, interval, prompts. The runner judges it against the bar (the
       bar is not in this step's key: a new bar re-judges, it does not re-ask the teacher).

Example:
    distill-edge build --config examples/tickets/tickets.toml --until teacher_check
    cat build/cache/teacher_check/*/check.json
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pipeline.config import BuildConfig
from pipeline.constrain import grammar_settings
from pipeline.generation.backends import LIBRARIES, Request, make_backend
from pipeline.measure.decision import judge
from pipeline.measure.roles import Role
from pipeline.outputs import ANSWERS, TEACHER_CHECK, TeacherCheck, write_doc
from pipeline.prompts import ChatPrompt
from pipeline.stage import BackendRuntime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import EVAL_FILE, read_rows

SAMPLE = 40  # labelled eval prompts the teacher answers first (all when fewer)
ADVICE = ("the student learns from the teacher's answers, so it cannot reach the bar either. "
          "Try: label descriptions or worked examples in [task] instructions, a stronger "
          "teacher (backend = \"openai\"), or a bar the teacher can reach; "
          "`distill-edge build --force` goes on anyway")


class TeacherCheckSettings(Settings):
    """What the sample's answers depend on; `enabled` is false without a bar of the user's."""

    enabled: bool
    task: TaskSpec | None = None
    sample: int = SAMPLE
    backend: str = ""
    prompt: ChatPrompt | None = None
    max_tokens: int = 0
    temperature: float = 0.0
    seed: int = 0
    base_url: str | list[str] | None = None  # openai backend: one endpoint or several
    model_name: str | None = None
    n_ctx: int | None = None  # local backends
    threads: int | None = None
    grammar: str | None = None  # [teacher] constrained: as the teacher stage answers
    grammar_skipped: str | None = None


class CheckVerdict(NamedTuple):
    outcome: str | None  # "pass" | "undecided" | "fail"; None: nothing was checked
    text: str  # one sentence ("" when nothing was checked)


def verdict(check: TeacherCheck, bar: float | None) -> CheckVerdict:
    """The check judged against the bar: outcome pass / undecided / fail and one sentence."""
    if not check.enabled or bar is None or not check.prompts or check.ci is None:
        return CheckVerdict(None, "")
    outcome = judge(check.ci, bar, higher_is_better=True)
    lo, hi = check.ci
    head = (f"teacher-first check: the teacher's {check.metric} {check.value:.3f} (95% "
            f"{lo:.3f} to {hi:.3f}, {check.prompts} labelled eval prompts) vs the [goal] bar {bar}")
    tail = {"pass": "it reaches the bar", "undecided": "it may reach the bar: going on",
            "fail": "it is clearly below the bar — " + ADVICE}[outcome]
    return CheckVerdict(outcome, f"{head}: {tail}")


class TeacherCheckStage:
    name = "teacher_check"
    libraries = LIBRARIES
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> TeacherCheckSettings:
        if config.goal.min_quality is None:
            return TeacherCheckSettings(enabled=False)
        t = config.teacher
        return TeacherCheckSettings(enabled=True, task=config.task.spec,
                                    backend=t.backend, prompt=config.task.teacher_prompt,
                                    max_tokens=t.max_tokens, temperature=t.temperature,
                                    seed=t.seed, **t.where(), **grammar_settings(config))

    def runtime(self, config: BuildConfig, target: Target) -> BackendRuntime:
        return BackendRuntime.of(config.teacher)

    def run(self, ctx: StageContext[TeacherCheckSettings, BackendRuntime]) -> TeacherCheck:
        from pipeline.measure.sequential import order
        from pipeline.measure.uncertainty import metric_interval

        s = ctx.settings
        rows = [r for r in read_rows(ctx.inputs["prompts"] / EVAL_FILE) if r["reference"] is not None]
        if not s.enabled or not rows or s.task is None or s.prompt is None:
            off = TeacherCheck(enabled=False)
            write_doc(ctx.out_dir / TEACHER_CHECK, off)
            return off
        # a fixed random sample, in eval order (the same prompts on every run)
        sample = [rows[i] for i in sorted(order(range(len(rows)))[: s.sample])]
        ctx.log(f"the teacher answers {len(sample)} labelled eval prompts first")
        backend = make_backend(s.backend, ctx.runtime.options(s),
                               ctx.inputs.get("teacher_model"))
        try:
            texts = {res.request.row_id: res.text for res in backend.run([
                Request(row_id=r["id"], sample=0, messages=tuple(s.prompt.messages(r["prompt"])),
                        max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed,
                        grammar=s.grammar)
                for r in sample])}
        finally:
            backend.close()
        task = make_task(s.task)
        preds = [task.parse(texts.get(r["id"], ""))[0] for r in sample]
        valid = sum(p is not None for p in preds) / len(preds)
        refs = [r["reference"] for r in sample]
        metric = s.task.primary
        result = TeacherCheck(enabled=True, metric=metric, prompts=len(sample),
                              value=round(task.evaluate(preds, refs)[metric], 4),
                              ci=metric_interval(task, metric, preds, refs),
                              valid=round(valid, 4), constrained=s.grammar is not None)
        ctx.log(f"teacher {metric} {result.value:.3f} on {len(sample)} prompts, {valid:.0%} of "
                f"its answers valid ({'under the task grammar' if s.grammar else 'free decoding'})")
        with (ctx.out_dir / ANSWERS).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": r["id"], Role.TEACHER: texts.get(r["id"], "")},
                                     ensure_ascii=False) + "\n" for r in sample)
        write_doc(ctx.out_dir / TEACHER_CHECK, result)
        return result
