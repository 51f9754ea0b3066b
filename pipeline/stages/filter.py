"""Filter stage: keep only teacher answers that pass the task's validator.

Drops, each counted by reason: empty or overlong answers, answers that fail the task's
parser/validator (invalid JSON, missing or extra keys, wrong types, bad date...), and
exact duplicates of an already kept (prompt, answer) pair. Kept answers are rewritten
to the task's canonical form (compact one-line JSON) — the training target.

Example:
    distill-edge build --target cpu-int4
    cat build/cache/filter/*/drops.json
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pipeline.config import BuildConfig
from pipeline.stage import StageContext
from pipeline.targets import Target


def filter_rows(rows: list[dict[str, Any]], max_chars: int, dedupe: bool
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split teacher rows into (kept, dropped); each dropped row gets a 'drop_reason'."""
    from pipeline.tasks.extraction import canonical, parse_answer, score

    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        text = row.get("response", "")
        reason = "too_long" if len(text) > max_chars else None
        obj = None
        if reason is None:
            obj, reason = parse_answer(text)
        if reason is None and obj is not None:
            target = canonical(obj)
            pair = (row["prompt"].strip(), target)
            if dedupe and pair in seen:
                reason = "duplicate"
            else:
                seen.add(pair)
                out = {"id": row["id"], "prompt": row["prompt"], "response": target}
                if row.get("reference"):  # diagnostics only: references are never trained on
                    out["teacher_field_accuracy"] = score(obj, row["reference"])["field_accuracy"]
                kept.append(out)
                continue
        dropped.append({**row, "drop_reason": reason})
    return kept, dropped


class FilterStage:
    name = "filter"
    version = "1"
    libraries: tuple[str, ...] = ()
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        from pipeline.tasks.extraction import TASK_VERSION

        return {"task": config.task.name, "task_version": TASK_VERSION,
                "max_response_chars": config.filter.max_response_chars,
                "dedupe": config.filter.dedupe}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        rows_path = ctx.inputs["teacher"] / "rows.jsonl"
        rows = [json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines()]
        kept, dropped = filter_rows(rows, ctx.settings["max_response_chars"], ctx.settings["dedupe"])
        with (ctx.out_dir / "kept.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        with (ctx.out_dir / "dropped.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in dropped)
        reasons = Counter(r["drop_reason"] for r in dropped)
        scored = [r["teacher_field_accuracy"] for r in kept if "teacher_field_accuracy" in r]
        summary = {"rows_in": len(rows), "kept": len(kept), "dropped": len(dropped),
                   "drops_by_reason": dict(sorted(reasons.items())),
                   "kept_teacher_field_accuracy": round(sum(scored) / len(scored), 4) if scored else None}
        (ctx.out_dir / "drops.json").write_text(json.dumps(summary, indent=2))
        ctx.log(f"kept {len(kept)}/{len(rows)}; dropped {dict(reasons)}")
        if not kept:
            from pipeline.errors import UserError
            raise UserError(f"filter kept no teacher rows (drops: {dict(reasons)}): check the "
                            "teacher model and its system prompt")
        return summary
