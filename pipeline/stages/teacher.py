"""Teacher stage: run the teacher over the train prompts and record every answer, crash-safely.

setup: pick the backend (llama_cpp / transformers / openai); read the rows a killed earlier
       run already finished (keyed by prompt id + sample index).
run:   one request per (prompt, sample): system prompt, optional few-shot turns, then the
       message — the shared prefix first and identical on every row so llama.cpp reuses
       its KV cache. Each finished row is appended, flushed and fsync'd to rows.jsonl at once
       (kill -9 loses no finished row; a torn last line is cut and redone). A request that
       keeps failing goes to failed.jsonl with its reason; if any remain (beyond the
       accepted `allow_failures`), the step is not committed and stops the build with one
       line (exit 1), and the next build asks only those again.
       A batching backend gets the request list in fixed waves: an unfinished wave is redone
       whole (its finished rows are kept, not written twice), because a batched answer
       depends on its batch — so a resumed run's rows equal an uninterrupted run's.
cleanup: stats.json (rows/min, prefill vs decode tokens, failures). If every request failed,
       a one-line error (exit 2); the partial output stays for the next run to resume.

Example:
    distill-edge build --target cpu-int4 --until teacher
    head -2 build/cache/teacher/*/rows.jsonl
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

from pipeline.config import BuildConfig
from pipeline.constrain import grammar_settings
from pipeline.errors import StepUnfinished, UserError
from pipeline.generation.backends import (
    LIBRARIES,
    Request,
    Result,
    TeacherBackend,
    make_backend,
)
from pipeline.outputs import (
    TEACHER_FAILED,
    TEACHER_ROWS,
    TEACHER_STATS,
    TeacherRow,
    TeacherStats,
    write_doc,
)
from pipeline.prompts import ChatPrompt
from pipeline.stage import BackendRuntime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks.inputs import EVAL_FILE, TRAIN_FILE, PromptRow, read_rows


def _done_rows(path: Path) -> dict[str, TeacherRow]:
    """Rows a previous (killed) run finished, by key; a torn last line is cut off and redone."""
    done: dict[str, TeacherRow] = {}
    if not path.is_file():
        return done
    good_bytes = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done[row.get("key", row["id"])] = row
            good_bytes += len(line)
    os.truncate(path, good_bytes)  # appends after this point stay valid JSONL
    return done


def _append(out: IO[str], record: TeacherRow) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    os.fsync(out.fileno())  # a finished row survives kill -9 and power loss


class TeacherSettings(Settings):
    """What the teacher's answers depend on (not concurrency or timeouts: those are runtime)."""

    backend: str
    prompt: ChatPrompt
    max_tokens: int
    temperature: float
    n_samples: int
    seed: int
    base_url: str | list[str] | None = None  # openai backend: one endpoint or several
    model_name: str | None = None
    n_ctx: int | None = None  # local backends
    threads: int | None = None
    # [teacher] constrained: the task grammar the answers decode under, or why there is none
    grammar: str | None = None
    grammar_skipped: str | None = None


class _Prompt(PromptRow):
    split: str  # "train" | "eval"


def _requests(prompts: list[_Prompt], s: TeacherSettings) -> list[Request]:
    """Every request of the stage, in a fixed order (done or not)."""
    return [Request(row_id=row["id"], sample=sample, messages=tuple(s.prompt.messages(row["prompt"])),
                    max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed + sample,
                    grammar=s.grammar)
            for row in prompts for sample in range(s.n_samples)]


def waves(reqs: list[Request], done: Collection[str], wave: int | None) -> list[list[Request]]:
    """What to send: the requests not done (wave None), or every wave of `wave` consecutive
    requests that has one not done — whole, so it is batched exactly as the first time."""
    if wave is None:
        return [[r for r in reqs if r.key not in done]]
    chunks = [reqs[i:i + wave] for i in range(0, len(reqs), wave)]
    return [c for c in chunks if any(r.key not in done for r in c)]


def _new_results(backend: TeacherBackend, reqs: list[Request], done: Collection[str]
                 ) -> Iterator[Result]:
    """The backend's results for every request not done yet, wave by wave; a request redone
    with its wave is dropped (its row stays as written)."""
    for wave in waves(reqs, done, backend.wave):
        yield from (res for res in backend.run(wave) if res.request.key not in done)


def _record(res: Result, row: _Prompt) -> TeacherRow:
    req = res.request
    out = TeacherRow(key=req.key, id=req.row_id, split=row["split"], sample=req.sample,
                     prompt=row["prompt"], reference=row["reference"], attempts=res.attempts)
    if res.error:
        return {**out, "error": res.error}
    return {**out, "response": res.text, "prompt_tokens": res.prompt_tokens,
            "prefill_tokens": res.prefill_tokens, "completion_tokens": res.completion_tokens}


class TeacherStage:
    name = "teacher"
    libraries = LIBRARIES
    resumable = True
    measurements = (TEACHER_STATS,)  # wall time, rows/min, tok/s

    def settings(self, config: BuildConfig, target: Target) -> TeacherSettings:
        t = config.teacher
        return TeacherSettings(
            backend=t.backend, prompt=config.task.teacher_prompt, max_tokens=t.max_tokens,
            temperature=t.temperature, n_samples=t.n_samples, seed=t.seed, **t.where(),
            **grammar_settings(config))

    def runtime(self, config: BuildConfig, target: Target) -> BackendRuntime:
        return BackendRuntime.of(config.teacher)

    def run(self, ctx: StageContext[TeacherSettings, BackendRuntime]) -> TeacherStats:
        from tqdm import tqdm

        s = ctx.settings
        # the train prompts, and the eval prompts that have no reference (the teacher's
        # answers become their references in eval_set; they are never trained on)
        prompts = [_Prompt(**r, split="train") for r in read_rows(ctx.inputs["prompts"] / TRAIN_FILE)]
        prompts += [_Prompt(**r, split="eval") for r in read_rows(ctx.inputs["prompts"] / EVAL_FILE)
                    if r["reference"] is None]
        by_id = {p["id"]: p for p in prompts}
        out_path = ctx.out_dir / TEACHER_ROWS
        done = _done_rows(out_path)
        reqs = _requests(prompts, s)
        todo = [r for r in reqs if r.key not in done]
        if done:
            ctx.log(f"resuming: {len(done)} of {len(reqs)} answers already done")
        if s.grammar_skipped:
            ctx.log(f"free decoding: {s.grammar_skipped}")
        # the backend's options: these settings + the runtime ones (concurrency, timeouts)
        backend = make_backend(s.backend, ctx.runtime.options(s),
                               ctx.inputs.get("teacher_model"))
        start, failed = time.perf_counter(), list[TeacherRow]()
        totals = {"prompt_tokens": 0, "prefill_tokens": 0, "completion_tokens": 0}
        try:
            with out_path.open("a", encoding="utf-8") as out, tqdm(
                    total=len(reqs), initial=len(done), unit="row", desc="teacher") as bar:
                for res in _new_results(backend, reqs, done):
                    record = _record(res, by_id[res.request.row_id])
                    bar.update(1)
                    if res.error:
                        failed.append(record)
                        continue
                    _append(out, record)
                    for key in totals:
                        totals[key] += record[key]  # type: ignore[literal-required]  # the 3 counts
                    rate = totals["completion_tokens"] / (time.perf_counter() - start)
                    bar.set_postfix(tok_s=f"{rate:.1f}")
        finally:
            backend.close()
        urls = getattr(backend, "urls", [])  # an openai teacher behind several endpoints
        served = {u: getattr(backend, "served", {}).get(u, 0) for u in urls} if len(urls) > 1 else {}
        with (ctx.out_dir / TEACHER_FAILED).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in failed)
        if todo and len(failed) == len(todo) and not done:
            raise UserError(f"the teacher failed on all {len(todo)} requests "
                            f"({failed[0]['error']}): check backend, base_url and model")
        if len(failed) > ctx.runtime.allow_failures:
            # not committed: the step stays resumable and the next build asks only these again
            raise StepUnfinished(
                f"the teacher failed on {len(failed)} of {len(reqs)} requests after retries "
                f"({failed[0]['error']}): run the build again to retry only those (the "
                f"{len(reqs) - len(failed)} finished answers are kept), or accept the loss with "
                f"`distill-edge build --allow-teacher-failures {len(failed)}`")
        wall = time.perf_counter() - start
        stats = TeacherStats(
            rows=len(reqs), rows_this_run=len(todo) - len(failed), failed=len(failed),
            wall_s=round(wall, 2), **totals, served_by=served or None,
            rows_per_min=round((len(todo) - len(failed)) / wall * 60, 2) if wall > 0 else None,
            decode_tok_s=round(totals["completion_tokens"] / wall, 2) if wall > 0 else None)
        write_doc(ctx.out_dir / TEACHER_STATS, stats)
        return stats
