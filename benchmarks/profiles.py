"""One table across target profiles: each profile's shipped artifact, measured in one run.

For each named profile the runner builds (or takes from the cache) every step up to the
fp32 student's benchmark — one config, so one student for all — then each profile's artifact
runs in its own fresh process on the same eval prompts, one after another (nothing else
running), held to the fp32 student's log-probs and answers cached by `bench_student`: size,
decode tokens/s, task metric, mean KL, top-1, share of answers identical to the fp32
student's, peak RSS of the process, and the profile's own quality gate.

Example:
    .venv/bin/python -m benchmarks.profiles cpu-int4 cpu-int8 arm64-q4 cpu-int4-onnx \
        cpu-int4-openvino cpu-int8-openvino --out build/profiles
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cache import read_jsonl
from pipeline.measure.roles import Role

METRIC = ("{metric}", "{metric}", "{:.3f}")  # the task's primary metric, filled in by markdown()
COLUMNS = (("profile", "profile", "{}"), ("artifact", "label", "{}"), ("size MB", "file_mb", "{:.1f}"),
           ("decode tok/s", "decode_tok_s", "{:.1f}"), METRIC,
           ("KL vs fp32", "kl_vs_reference", "{:.4f}"), ("top-1 vs fp32", "top1_agreement", "{:.3f}"),
           ("same answer as fp32", "greedy_agreement", "{:.3f}"),
           ("peak RSS MB", "peak_rss_mb", "{:.0f}"), ("gate", "gate", "{}"),
           ("speed measured on", "benchmarked_on", "{}"))
UNTIL = "bench_student"  # every step the table needs: the exports and the fp32 reference


def prepare(names: list[str], config: Path | None, root: Path) -> list[dict[str, Any]]:
    """Build or reuse each profile's steps up to UNTIL; its target, artifact and step paths."""
    from pipeline.config import load_config
    from pipeline.runner import run_plan
    from pipeline.targets import load_target

    cfg = load_config(config, {})
    builds = []
    for name in names:
        target = load_target(name)
        manifest = run_plan(cfg, target, root, until=UNTIL)
        paths = {s["step"]: Path(s["path"]) for s in manifest["steps"]}
        builds.append({"target": target, "paths": paths, "config": cfg, "root": root,
                       "artifact": paths["export"] / target.artifact()})
    return builds


def measure(builds: list[dict[str, Any]], out_dir: Path) -> tuple[list[dict[str, Any]],
                                                                  list[dict[str, Any]]]:
    """Every profile's artifact, held to the cached fp32 reference: (rows, answers per eval
    prompt, the fp32 student's included)."""
    from pipeline.measure.bench import REFERENCE_FILE, bench_rows, score_texts
    from pipeline.stages import REGISTRY
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import read_rows

    first = builds[0]
    reference = first["paths"][UNTIL]
    if not (reference / REFERENCE_FILE).is_file():
        raise SystemExit("no fp32 torch reference was benchmarked: set [bench] torch_row = true")
    s = REGISTRY["bench"].settings(first["config"], first["target"])
    common = {"prompt": s.student_prompt, "score": True}
    rows = [{"label": b["target"].quant + b["target"].fmt.label, "role": b["target"].name,
             "model": b["artifact"], "runtime": b["target"].fmt.adapter, **common} for b in builds]
    evals = read_rows(first["paths"]["eval_set"] / "eval.jsonl")  # the build's own eval split
    texts = score_texts(first["paths"]["distill"], s.student_prompt, evals, s.score_rows)
    result = bench_rows(rows, evals, out_dir, make_task(s.task), threads=s.threads, n_ctx=s.n_ctx,
                        max_tokens=s.max_tokens, warmup=s.warmup, synthetic=s.synthetic,
                        latency_prompts=s.latency_prompts, texts=texts,
                        reference=reference / REFERENCE_FILE)
    torch_rows = json.loads((reference / "bench.json").read_text())["rows"]
    answers = [{**a, **b} for a, b in zip(read_jsonl(reference / "answers.jsonl"),
                                          read_jsonl(out_dir / "answers.jsonl"), strict=True)]
    return torch_rows + result["rows"], answers


def with_parity(rows: list[dict[str, Any]], answers: list[dict[str, Any]],
                builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds the greedy-answer agreement with the fp32 student and each profile's decision
    (pipeline.measure.decision: the [goal] bar and its limits, with intervals, widened over
    the eval sets), on free decoding: what a free profile ships; a constrained (GGUF)
    profile's own build decides on its grammar-decoded rows instead."""
    from pipeline.measure.decision import Evidence, Limits, decide_build, tiers_of
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import read_rows

    reference = next(r for r in rows if r["role"] == Role.DISTILLED_TORCH)
    targets = {b["target"].name: b["target"] for b in builds}
    config = builds[0]["config"]
    evals = read_rows(builds[0]["paths"]["eval_set"] / "eval.jsonl")
    primary = next((r["eval_set"] for r in rows if r.get("eval_set")), None)
    out = [{**reference, "profile": "(fp32 reference, cached)",
            "benchmarked_on": "this build machine"}]
    for row in rows:
        target = targets.get(row["role"])
        if target is None:
            continue
        same = [a[row["role"]] == a[Role.DISTILLED_TORCH] for a in answers]
        row = {**row, "greedy_agreement": round(sum(same) / len(same), 4), "profile": target.name,
               "benchmarked_on": target.benchmarked_on}
        ev = Evidence(task=make_task(config.task.spec), metric=config.task.primary_metric,
                      answers=[{Role.DISTILLED: a[row["role"]], Role.DISTILLED_TORCH: a[Role.DISTILLED_TORCH]}
                               for a in answers],
                      refs=[e["reference"] for e in evals], tiers=tiers_of(evals, primary))
        goal = config.goal.min_quality if config.gate.require_goal else None
        limits = Limits(goal=goal, min_quality=target.min_quality,
                        max_quant_loss=target.max_quant_loss,
                        max_kl=target.max_kl, min_greedy_agreement=target.min_greedy_agreement)
        decision = decide_build(ev, limits, [reference, {**row, "role": Role.DISTILLED}],
                                Role.DISTILLED_TORCH)
        row["gate"] = decision["outcome"].upper() + "".join(
            f"; {c['check']} {c['outcome']}" for c in decision["checks"] if c["outcome"] != "pass")
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], metric: str) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        return "–" if value is None else fmt.format(value)

    shown = (metric.replace("_", " "), metric, METRIC[2])
    cols = [shown if c is METRIC else c for c in COLUMNS]
    lines = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("targets", nargs="+", help="profile names (see `distill-edge targets list`)")
    parser.add_argument("--config", type=Path, help="build config TOML (default: embedded)")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--out", type=Path, help="also write profiles.md and profiles.json here")
    args = parser.parse_args()
    builds = prepare(args.targets, args.config, args.build_dir)
    with tempfile.TemporaryDirectory() as tmp:
        rows, answers = measure(builds, Path(tmp))
    table = with_parity(rows, answers, builds)
    metric = builds[0]["config"].task.primary_metric
    print(markdown(table, metric))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "profiles.md").write_text(markdown(table, metric))
        (args.out / "profiles.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
