"""Which GGUF encoding is the smallest that passes the build's decision? Every candidate type
of one profile, exported from the same student and measured in one run.

For a GGUF profile the runner builds (or reuses) the steps up to the fp32 student's bench,
then exports the student once per candidate type (each export is a cached step of its own,
with the profile's calibration: the task imatrix where the profile sets it). Each candidate
answers the eval prompts in its own fresh process, decoded the way the profile ships
(under the task's grammar when the profile is constrained), beside the F16 export decoded
the same way; each gets the profile's decision (pipeline.measure.decision: the [goal] bar,
the KL vs the fp32 student, the metric loss and greedy agreement vs the F16 row, with
intervals, widened when undecided). The table lists every candidate by its real bits per
weight (read from the written file), and names the smallest that passes.

Example:
    .venv/bin/python -m benchmarks.encodings cpu-int4 --candidates Q4_0 IQ4_NL Q4_K_M Q5_K_M \
        Q6_K Q8_0 --out build/encodings
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cache import read_jsonl
from pipeline.measure.roles import Role

UNTIL = "bench_student"  # the fp32 reference's log-probs, which KL is measured against


def exports(profile: str, candidates: list[str], config: Path | None, root: Path
            ) -> tuple[Any, Any, dict[str, Path], dict[str, Path]]:
    """(config, target, each candidate's exported file, the build's step folders)."""
    from pipeline.config import load_config
    from pipeline.runner import run_plan
    from pipeline.targets import load_target

    cfg, target = load_config(config, {}), load_target(profile)
    if target.format != "gguf":
        raise SystemExit(f"{profile} is a {target.format} profile: this script searches GGUF types")
    paths = {s["step"]: Path(s["path"]) for s in run_plan(cfg, target, root, until=UNTIL)["steps"]}
    files = {}
    for quant in candidates:  # target.quant decides the export step's key: one cached step each
        variant = target.model_copy(update={"quant": quant})
        steps = run_plan(cfg, variant, root, until="export")["steps"]
        files[quant] = Path(steps[-1]["path"]) / variant.artifact()
    files["F16"] = Path(steps[-1]["path"]) / target.artifact(fp=True)
    return cfg, target, files, paths


def measure(cfg: Any, target: Any, files: dict[str, Path], paths: dict[str, Path],
            out_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The F16 row and every candidate's, decoded as the profile ships: (rows, answers, evals)."""
    from pipeline.measure.bench import REFERENCE_FILE, bench_rows, score_texts
    from pipeline.stages import REGISTRY
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import read_rows

    s = REGISTRY["bench"].settings(cfg, target)
    grammar = {"grammar": s.grammar} if s.constrained else {}
    rows = [{"label": quant + (" + grammar" if grammar else ""), "role": quant, "model": path,
             "runtime": target.fmt.adapter, "prompt": s.student_prompt, "score": True, **grammar}
            for quant, path in files.items()]
    evals = read_rows(paths["eval_set"] / "eval.jsonl")
    texts = score_texts(paths["distill"], s.student_prompt, evals, s.score_rows)
    result = bench_rows(rows, evals, out_dir, make_task(s.task), threads=s.threads, n_ctx=s.n_ctx,
                        max_tokens=s.max_tokens, warmup=s.warmup, synthetic=None,
                        latency_prompts=s.latency_prompts, texts=texts,
                        reference=paths[UNTIL] / REFERENCE_FILE)
    return result["rows"], read_jsonl(out_dir / "answers.jsonl"), evals


def decide_each(cfg: Any, target: Any, rows: list[dict[str, Any]], answers: list[dict[str, Any]],
                evals: list[dict[str, Any]], files: dict[str, Path]) -> list[dict[str, Any]]:
    """Every candidate's decision against the F16 row, its real bits per weight; by size."""
    from pipeline.measure.decision import Evidence, Limits, decide_build, tiers_of
    from pipeline.measure.quant_mix import gguf_mix
    from pipeline.tasks import make_task

    goal = cfg.goal.min_quality if cfg.gate.require_goal else None
    limits = Limits(goal=goal, min_quality=target.min_quality, max_quant_loss=target.max_quant_loss,
                    max_kl=target.max_kl, min_greedy_agreement=target.min_greedy_agreement)
    primary = next((r["eval_set"] for r in rows if r.get("eval_set")), None)
    f16 = next(r for r in rows if r["role"] == "F16")
    table = []
    for row in rows:
        if row["role"] == "F16":
            continue
        ev = Evidence(task=make_task(cfg.task.spec), metric=cfg.task.primary_metric,
                      answers=[{Role.DISTILLED: a[row["role"]], Role.DISTILLED_FP: a["F16"]}
                               for a in answers],
                      refs=[e["reference"] for e in evals], tiers=tiers_of(evals, primary))
        decision = decide_build(ev, limits, [{**f16, "role": Role.DISTILLED_FP},
                                             {**row, "role": Role.DISTILLED}], Role.DISTILLED_FP)
        mix = gguf_mix(files[row["role"]], row["role"])
        table.append({**row, "bits_per_weight": mix["bits_per_weight"], "decision": decision})
    return sorted(table, key=lambda r: r["bits_per_weight"])


def markdown(table: list[dict[str, Any]], metric: str) -> str:
    lines = [f"| encoding | bpw | size MB | KL vs fp32 | {metric} | loss vs F16 (95% interval) "
             "| decode tok/s | decision | checks not passed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        d = r["decision"]
        loss = next((c for c in d["checks"] if c["check"] == "max_quant_loss"), {})
        ci = loss.get("ci") or [float("nan")] * 2
        others = "; ".join(f"{c['check']} {c['outcome']}" for c in d["checks"]
                           if c["outcome"] != "pass" or c.get("deferred")) or "–"
        lines.append(f"| {r['label']} | {r['bits_per_weight']} | {r['file_mb']:.1f} | "
                     f"{r.get('kl_vs_reference', float('nan')):.4f} | {r[metric]:.3f} | "
                     f"{loss.get('value', float('nan')):.3f} ({ci[0]:.3f}–{ci[1]:.3f}) | "
                     f"{r.get('decode_tok_s') or 0:.1f} | "
                     f"{'ship' if d['ship'] else 'no ship'} ({d['outcome']}) | {others} |")
    passing = [r for r in table if r["decision"]["ship"]]
    lines.append("")
    lines.append(f"Smallest that passes: {passing[0]['label']} ({passing[0]['bits_per_weight']} "
                 "bits per weight)." if passing else "No candidate passes.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("target", help="a GGUF profile (see `distill-edge targets list`)")
    parser.add_argument("--candidates", nargs="+", default=["Q4_0", "IQ4_NL", "Q4_K_M", "Q5_K_M",
                                                            "Q6_K", "Q8_0"])
    parser.add_argument("--config", type=Path, help="build config TOML (default: embedded)")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--out", type=Path, help="also write encodings.md and encodings.json here")
    args = parser.parse_args()
    cfg, target, files, paths = exports(args.target, args.candidates, args.config, args.build_dir)
    with tempfile.TemporaryDirectory() as tmp:
        rows, answers, evals = measure(cfg, target, files, paths, Path(tmp))
    table = decide_each(cfg, target, rows, answers, evals, files)
    text = markdown(table, cfg.task.primary_metric)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "encodings.md").write_text(text)
        (args.out / "encodings.json").write_text(json.dumps(table, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
