"""Judge stage: the teacher judges every benchmarked artifact's answers against its own.

Off unless `[task] judge = true` (then only judge.json saying so is written). Meant for
free-form (`text`) tasks, where chrF against a reference misses what a reader cares about.
setup:   the eval prompts, each bench row's answers (bench_teacher, bench_student, bench) and
         the teacher's own answers — its bench row's; when the teacher has no bench row
         (a remote or HF teacher) they are generated here with its prompt.
run:     for the first `judge_rows` prompts, every distinct (prompt, artifact answer) pair
         that differs from the teacher's answer is judged twice by the teacher backend —
         artifact as A, then as B (pipeline.measure.judge) — greedy, 4 tokens.
cleanup: judge.json (per role: win / tie / loss vs the teacher, win rate with ties as ½,
         the judge model) and judgments.jsonl (every pair with both raw verdicts).

Example:
    distill-edge build --config my_text_task.toml --target cpu-int4   # [task] judge = true
    cat build/cache/judge/*/judge.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.generation.backends import LIBRARIES, Request, make_backend
from pipeline.measure.bench import BENCH_STEPS, merged_answers
from pipeline.measure.judge import judge_messages, pairs, parse_verdict, tally
from pipeline.measure.roles import Role
from pipeline.outputs import JUDGE, JudgeSummary
from pipeline.prompts import ChatPrompt
from pipeline.stage import BackendRuntime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks.inputs import EVAL_FILE, read_rows


class JudgeSettings(Settings):
    enabled: bool
    rows: int = 0
    backend: str = ""
    teacher_prompt: ChatPrompt | None = None  # for the teacher's own answers when not benched
    max_tokens: int = 0
    base_url: str | list[str] | None = None  # openai backend: one endpoint or several
    model_name: str | None = None
    n_ctx: int | None = None  # local backends
    threads: int | None = None


def _answers(ctx: StageContext[JudgeSettings]) -> dict[str, list[str]]:
    """Every bench row's answers by role, in eval order (rows that stopped early, hopeless,
    answered only some prompts: they are not judged)."""
    rows = merged_answers([ctx.inputs[step] for step in BENCH_STEPS])
    roles = {role for row in rows for role in row} - {"id", "reference"}
    return {role: [row[role] for row in rows] for role in sorted(roles)
            if all(role in row for row in rows)}


def _generate(backend: Any, requests: list[Request]) -> dict[str, str]:
    """The backend's text per request key (a failed request: empty text, read as no verdict)."""
    return {res.request.key: res.text for res in backend.run(requests)}


class JudgeStage:
    name = "judge"
    libraries = LIBRARIES
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> JudgeSettings:
        if not config.task.judge:
            return JudgeSettings(enabled=False)
        t = config.teacher
        return JudgeSettings(enabled=True, rows=config.task.judge_rows, backend=t.backend,
                             teacher_prompt=config.task.teacher_prompt, max_tokens=t.max_tokens,
                             **t.where())

    def runtime(self, config: BuildConfig, target: Target) -> BackendRuntime:
        return BackendRuntime.of(config.teacher)

    def run(self, ctx: StageContext[JudgeSettings, BackendRuntime]) -> JudgeSummary:
        s = ctx.settings
        if not s.enabled:
            off = JudgeSummary(enabled=False)
            (ctx.out_dir / JUDGE).write_text(off.model_dump_json(include={"enabled"}) + "\n")
            return off
        eval_rows = read_rows(ctx.inputs["eval"] / EVAL_FILE)[: s.rows]
        answers = {role: texts[: len(eval_rows)] for role, texts in _answers(ctx).items()}
        backend = make_backend(s.backend, ctx.runtime.options(s),
                               ctx.inputs.get("teacher_model"))
        try:
            teacher = answers.pop(Role.TEACHER, None)
            if teacher is None and s.teacher_prompt is not None:
                ctx.log(f"the teacher has no bench row: answering {len(eval_rows)} prompts first")
                own = _generate(backend, [
                    Request(row_id=r["id"], sample=0, messages=tuple(s.teacher_prompt.messages(r["prompt"])),
                            max_tokens=s.max_tokens, temperature=0.0, seed=0) for r in eval_rows])
                teacher = [own.get(f"{r['id']}#0", "") for r in eval_rows]
            to_judge, plan = pairs(eval_rows, answers, teacher or [], len(eval_rows))
            prompts = {r["id"]: r["prompt"] for r in eval_rows}
            keys = list(to_judge)
            ctx.log(f"judging {len(keys)} distinct answers x 2 orders "
                    f"({len(plan) - sum(p['pair'] is not None for p in plan)} identical to the teacher's)")
            requests = [Request(row_id=str(i), sample=order, max_tokens=4, temperature=0.0, seed=0,
                                messages=judge_messages(prompts[rid], *((ans, to_judge[(rid, ans)])
                                                        if order == 0 else (to_judge[(rid, ans)], ans))))
                        for i, (rid, ans) in enumerate(keys) for order in (0, 1)]
            raw = _generate(backend, requests)
        finally:
            backend.close()
        verdicts = {k: (parse_verdict(raw.get(f"{i}#0", "")), parse_verdict(raw.get(f"{i}#1", "")))
                    for i, k in enumerate(keys)}
        with (ctx.out_dir / "judgments.jsonl").open("w", encoding="utf-8") as fh:
            for i, (rid, ans) in enumerate(keys):
                fh.write(json.dumps({"id": rid, "answer": ans, "teacher": to_judge[(rid, ans)],
                                     "as_a": raw.get(f"{i}#0", ""), "as_b": raw.get(f"{i}#1", "")},
                                    ensure_ascii=False) + "\n")
        result = JudgeSummary(
            enabled=True, rows=len(eval_rows), judge=_judge_name(ctx.inputs), pairs=len(keys),
            calls=len(requests), unreadable=sum(v is None for pair in verdicts.values() for v in pair))
        # judge.json: the summary and each judged role's wins / ties / losses
        (ctx.out_dir / JUDGE).write_text(json.dumps(
            {**result.model_dump(), "roles": tally(plan, verdicts)}, indent=2) + "\n")
        return result


def _judge_name(inputs: dict[str, Path]) -> str:
    model = inputs.get("teacher_model")
    return model.name if model is not None else "the teacher endpoint"
