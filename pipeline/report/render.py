"""Render the build report — Markdown, self-contained HTML — from report.json's data.

Every number shown comes from the report dict (the same data as report.json), so
`distill-edge report BUILD_DIR` can re-render a report from its JSON alone.

Example:
    distill-edge report build/cpu-int4      # rewrites report.md and report.html
"""

from __future__ import annotations

import html
import os
import platform
from typing import Any

from pipeline.measure.quant_mix import mix_line
from pipeline.measure.search import shipped_row
from pipeline.measure.seeds import seed_line
from pipeline.runkit.bench import local_cpu

HEAD = [("artifact", "label", "{}"), ("size MB", "file_mb", "{:.1f}")]
# (header, key, format) — the table is data, not code; the task's own metric columns
# (report["task"]["columns"]) go between HEAD and COLUMNS
COLUMNS = [
    ("agrees w/ teacher", "teacher_agreement", "{:.3f}"),
    ("ppl (ref. answers)", "perplexity", "{:.3f}"),
    ("KL vs fp32", "kl_vs_reference", "{:.4f}"),
    ("top-1 vs fp32", "top1_agreement", "{:.3f}"),
    ("same answer as fp32", "greedy_agreement", "{:.3f}"),
    ("prompt tok", "mean_prompt_tokens", "{:.0f}"),
    ("TTFT ms", "ttft_mean_s", "{:.0f}"),
    ("prefill tok/s", "prefill_tok_s", "{:.0f}"),
    ("decode tok/s", "decode_tok_s", "{:.1f}"),
    ("pp tok/s (fixed)", "pp_tok_s", "{:.0f}"),
    ("tg tok/s (fixed)", "tg_tok_s", "{:.1f}"),
    ("tg p90 tok/s", "tg_tok_s_p90", "{:.1f}"),
    ("tg bare loop tok/s", "tg_bare_tok_s", "{:.1f}"),
    ("harness cost %", "harness_overhead_pct", "{:+.1f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("other CPU %", "other_cpu_pct", "{:.0f}"),
]
# the CPU features llama.cpp / ONNX Runtime / OpenVINO kernels pick their paths by (x86, then ARM)
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon",
             "asimd", "asimddp", "i8mm", "sve")


def inference_flags(flags: list[str]) -> list[str]:
    """The flags of CPU_FLAGS a CPU has, in that order."""
    return [f for f in CPU_FLAGS if f in flags]


def environment() -> dict[str, Any]:
    """The hardware and settings the numbers were measured on."""
    import psutil

    model, flags = local_cpu()
    return {"cpu": model, "cpu_flags": inference_flags(flags), "cores": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)")}


def columns(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The table's columns for this report's task."""
    return [*HEAD, *(tuple(c) for c in report["task"]["columns"]), *COLUMNS]  # type: ignore[misc]


def _metric(report: dict[str, Any]) -> str:
    return str(report["task"]["metric"]).replace("_", " ")


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if key == "label" and (row.get("contended") or row.get("stopped")):
        # ⚠ measured while other processes were busy; † stopped early (see the caption)
        return f"{value}{' ⚠' if row.get('contended') else ''}{' †' if row.get('stopped') else ''}"
    if key == "ci":  # [lo, hi] of the primary metric
        return f"{value[0]:.3f}–{value[1]:.3f}"
    return fmt.format(value * 1000 if key == "ttft_mean_s" else value)


def _judge_line(judge: dict[str, Any]) -> str:
    return (f"Judged by the teacher ({judge['judge']}), not by people: on the first "
            f"{judge['rows']} eval prompts each artifact's answer was compared with the "
            "teacher's own answer, twice with the two answers swapped (to cancel position "
            "bias); a win in one order and a tie or win in the other is a win. W/T/L = "
            "wins/ties/losses against the teacher; answers identical to the teacher's are ties. "
            f"{judge['pairs']} distinct answers, {judge['calls']} judge calls, "
            f"{judge['unreadable']} verdicts unreadable (counted as ties).")


def _paired(step: dict[str, Any]) -> str:
    if "ci" not in step:
        return ""
    lo, hi = step["ci"]
    return (f" (paired 95% interval {lo:+.3f} to {hi:+.3f}"
            + ("" if step["distinguishable"] else ": not distinguishable from noise")
            # a row stopped early (†): the step is measured on the prompts both rows answered
            + (f"; on the {step['prompts']} prompts both answered" if step.get("prompts") else "")
            + ")")


def _set_lines(report: dict[str, Any]) -> list[str]:
    """One line per artifact with every eval set's figures (when the eval has several sets)."""
    rows = [r for r in report["bench"]["rows"] if r.get("sets")]
    if not rows:
        return []
    keys = [k for _, k, _ in report["task"]["columns"] if k != "judge"]
    primary = rows[0].get("eval_set")
    lines = [f"The table above, the verdict and the gate use the '{primary}' set."]
    for row in rows:
        parts = []
        for name, q in row["sets"].items():
            figures = ", ".join(f"{k.replace('_', ' ')} {q[k]:.3f}" for k in keys if k in q)
            parts.append(f"{name} ({q.get('rows')} prompts): {figures}")
        lines.append(f"{row['label']} — " + "; ".join(parts))
    return lines


OTHER_INTERVALS = (("exact", "exact_ci"), ("agrees w/ teacher", "teacher_agreement_ci"),
                   ("same answer as fp32", "greedy_agreement_ci"))


def _other_interval_lines(report: dict[str, Any]) -> list[str]:
    """Per artifact: exact match and the agreement figures with their bootstrap intervals."""
    lines = []
    for row in report.get("bench", {}).get("rows", []):
        parts = [f"{name} {row[key.removesuffix('_ci')]:.3f} ({row[key][0]:.3f}–{row[key][1]:.3f})"
                 for name, key in OTHER_INTERVALS
                 if row.get(key) and row.get(key.removesuffix("_ci")) is not None]
        if parts:
            lines.append(f"{row['label']}: " + "; ".join(parts) + ".")
    return lines


def labels_line(labels: dict[str, Any]) -> str:
    """Did the teacher add anything over the user's own labels? (both students fp32, torch)"""
    lo, hi = labels["ci"]
    said = ("the teacher's data added to your labels" if lo > 0 else
            "your labels alone did better than the teacher's data" if hi < 0 else
            "not distinguishable from fine-tuning on your labels alone at this eval size")
    return (f"Distilled fp32 student − the same student fine-tuned on your labelled train rows "
            f"alone (same recipe), {labels['metric'].replace('_', ' ')}: {labels['delta']:+.3f} "
            f"(paired 95% interval {lo:+.3f} to {hi:+.3f}, {labels['prompts']} prompts): {said}.")


def encoding_lines(search: dict[str, Any], target: str, metric: str) -> list[str]:
    """The encoding search: every candidate tried, smallest first, and what shipped."""
    lines = []
    for c in search["candidates"]:
        checks = "; ".join(f"{k['check']} {k['outcome']}" for k in c["checks"]) or "no checks"
        kl = "–" if c.get("kl") is None else f"{c['kl']:.4f}"
        lines.append(f"{c['quant']}: {c['bpw']:.3f} bits per weight, {c['file_mb']:.1f} MB, KL "
                     f"{kl}, {metric} {c['metric']:.3f} — {c['outcome']} ({checks})")
    shipped = next((c for c in search["candidates"] if c["quant"] == search["shipped"]), None)
    if shipped is not None:
        plain = (f" — more than 5 bits per weight, so not a 4-bit file by size whatever "
                 f"`{target}` says" if "int4" in target and shipped["bpw"] > 5 else "")
        lines.append(f"What ships: {shipped['quant']}, {shipped['bpw']:.3f} bits per weight, "
                     f"{shipped['file_mb']:.1f} MB{plain}. Smallest first; the search stops at "
                     "the first that passes the decision.")
    return lines


def device_lines(device: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The shipped artifact timed on the build's [device], beside the build host's figures."""
    facts, host = device["device"], shipped_row(rows) or {}
    versions = (f"{facts['runtime']} {facts['runtime_version']} there, "
                f"{device['host_runtime_version']} on the build host"
                + ("" if facts["runtime_version"] == device["host_runtime_version"]
                   else " — the versions differ: answers and speed may differ for that reason too"))
    return [
        f"Device `{device['address']}`: {facts['cpu']} ({facts['machine']}; "
        f"{', '.join(inference_flags(facts['cpu_flags'])) or 'no listed SIMD flags'}), "
        f"{facts['cores']} cores, {facts['memory_gb']} GB RAM, {facts['os']}, Python "
        f"{facts['python']}; {versions}.",
        f"{device['prompts']} eval prompts answered one at a time after a warm-up, by the "
        f"bundle's own run.py code: load {device['load_s']} s, first token "
        f"{device['ttft_mean_s']} s, decode {device['decode_tok_s']} tok/s (streamed pieces), "
        f"{device['total_mean_s']} s per answer, peak RSS {device['peak_rss_mb']:.0f} MB"
        + (f" (build host: first token {host['ttft_mean_s']} s, decode {host['decode_tok_s']} "
           "tok/s)" if host.get("decode_tok_s") else "") + ".",
        f"{device['same_answers']} of {device['prompts']} answers identical to the build "
        "host's (greedy decoding); quality is measured on the build host."]


def decision_lines(decision: dict[str, Any]) -> list[str]:
    """The decision's sentence, then each check: its outcome, and where it was widened."""
    lines = [decision["sentence"]]
    for c in decision["checks"]:
        trail = "".join(f" Undecided on {t['on']} ({t['prompts']} prompts): widened." for t in
                        c.get("tried", [])[:-1])
        lines.append(f"{c['outcome'].upper()}: {c['text']}.{trail}")
    return lines


def _sections(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) shared by the Markdown and HTML renderings."""
    out: list[tuple[str, list[str]]] = []
    verdict = report.get("verdict") or {}
    task = report["task"]
    lines = [verdict.get("text", "no verdict")]
    if task.get("references") in ("teacher", "mixed"):
        lines.append("The eval prompts had no references: their references are the teacher's "
                     "answers, so every quality figure here is agreement with the teacher — "
                     "quality against ground truth is unknown.")
    out.append(("Verdict", lines))
    if mix := report.get("quant_mix"):
        out.append(("Quantization, as written", [mix_line(mix)]))
    if search := report["bench"].get("search"):
        out.append(("Encodings tried", encoding_lines(search, report["target"],
                                                      str(task["metric"]).replace("_", " "))))
    if lines := _set_lines(report):
        out.append(("Quality per eval set", lines))
    if lines := grammar_lines(report["bench"]["rows"], str(task["metric"])):
        out.append(("Constrained decoding (the task's grammar)", lines))
    if lines := _other_interval_lines(report):
        out.append(("95% intervals of the other figures", lines))
    if judge := report.get("judge"):
        out.append(("Teacher as judge", [_judge_line(judge)]))
    if labels := report.get("labels"):
        out.append(("Fine-tuned on your labels", [labels_line(labels)]))
    if device := report.get("device"):
        out.append(("On the device", device_lines(device, report["bench"]["rows"])))
    if decision := report.get("decision"):
        out.append(("Decision", decision_lines(decision)))
    if steps := report.get("attribution"):
        out.append((f"Attribution ({_metric(report)} change per step)",
                    [f"{s['step']}: {s['from']} → {s['to']}: {s['delta']:+.3f}" + _paired(s)
                     for s in steps]))
    if data := report.get("data"):
        drops = ", ".join(f"{k}: {v}" for k, v in data["drops_by_reason"].items()) or "none"
        out.append(("Teacher data", [
            f"Teacher rows {data['rows_in']}, kept {data['kept']}, dropped {data['dropped']} ({drops}).",
            f"Kept rows' {data['kept_teacher_metric'].replace('_', ' ')} vs "
            "the train data's references, where it has them (diagnostic only, never trained "
            f"on): {data['kept_teacher_quality']}."]))
    if t := report.get("teacher"):
        out.append(("Teacher stage", [
            f"{t['rows']} rows at {t['rows_per_min']} rows/min; prompt tokens "
            f"{t['prompt_tokens']}, of which prefilled {t['prefill_tokens']} (the rest reused "
            f"from the KV cache); {t['completion_tokens']} tokens generated at "
            f"{t['decode_tok_s']} tok/s overall."]))
    if train := report.get("training"):
        out.append(("Training", [
            f"{train['mode']}-level KD"
            + (f", LoRA rank {train['lora_rank']} (merged)" if train.get("lora_rank") else "")
            + f": {train['examples']} examples, {train['steps']} steps, loss {train['first_loss']} → "
            f"{train['final_loss']}, {train['train_tokens_per_s']} tokens/s."
            + (f" Held-out loss (eval split reference answers) {train['first_eval_loss']} → "
               f"{train['final_eval_loss']}." if "final_eval_loss" in train else "")
            + (f" Held-out KL to the teacher {train['first_eval_kl']} → {train['final_eval_kl']}."
               if "final_eval_kl" in train else "")
            + f" Trained on {train['device']} in {train['precision']} ({train['precision_reason']})."]))
    if seeds := (report.get("seeds") or {}).get("distill_runs"):
        out.append(("Seeds", [seed_line(seeds)]))
    walls = report.get("stage_wall_s", {})
    out.append(("Stage wall times (when computed)",
                [", ".join(f"{k} {v:.0f} s" for k, v in walls.items()) or "none"]))
    env = report.get("environment", {})
    out.append(("Environment", [
        f"CPU: {env.get('cpu')} ({', '.join(env.get('cpu_flags', []))}), {env.get('cores')} "
        f"cores, {env.get('ram_gb')} GB RAM; OMP_WAIT_POLICY: {env.get('omp_wait_policy')}.",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in report.get("libraries", {}).items()),
        "Data sha256: " + ", ".join(f"{k} {v[:16]}…" for k, v in report.get("datasets", {}).items())]))
    return out


def grammar_lines(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """Each distilled artifact free vs under the task's grammar (pipeline.constrain)."""
    by_role = {r["role"]: r for r in rows}
    lines = []
    for row in rows:  # a grammar row's free twin: "x" for "x_grammar", "x_free" for "x"
        free = by_role.get(row["role"].removesuffix("_grammar")
                           if row["role"].endswith("_grammar") else row["role"] + "_free")
        if not row.get("grammar") or free is None or free.get("grammar"):
            continue

        def pair(key: str, fmt: str = ".3f", r: dict[str, Any] = row,
                 f: dict[str, Any] = free) -> str:
            a, b = f.get(key), r.get(key)
            return "–" if a is None or b is None else f"{a:{fmt}} → {b:{fmt}}"

        a, b = free.get("decode_tok_s"), row.get("decode_tok_s")
        cost = (f" ({abs(100 * (1 - b / a)):.1f} % {'slower' if b <= a else 'faster'})"
                if a and b else "")
        name = free["label"].removesuffix(", free decoding")
        lines.append(f"{name}: valid {pair('valid')}, cut off at max_tokens "
                     f"{pair('truncated')}, {metric.replace('_', ' ')} {pair(metric)}, exact "
                     f"{pair('exact')}, decode {pair('decode_tok_s', '.1f')} tok/s{cost}.")
    if lines:
        lines.append("Free decoding → under the grammar, same artifact, same prompts; the "
                     "grammar (llguidance, from the task's schema or labels, no free "
                     "whitespace; a json task's copy fields limited to word spans of the "
                     "message) masks every token it does not allow, so an answer that ends "
                     "always parses; decode tok/s on the timed prompts.")
    return lines


METRIC_HELP = {  # what the task columns mean, per kind
    "json": "Field accuracy = share of the schema's top-level fields equal to the reference "
            "(strings ignoring case, spacing and articles; dates as dates; arrays as sets). ",
    "label": "Accuracy = share of answers with the reference label; macro-F1 = mean F1 over "
             "the labels that occur. ",
    "text": "chrF = corpus character n-gram F-score against the references (sacrebleu). ",
}


def _timed_on(rows: list[dict[str, Any]]) -> str:
    """Which prompts the latency columns average: the first ones, answered one at a time."""
    n = max((r["latency_prompts"] for r in rows if r.get("latency_prompts")), default=None)
    return (f", on the first {n} eval prompts answered one at a time (the others are answered "
            "for the quality columns only; torch rows answer them 8 at a time)" if n else "")


def _caption(report: dict[str, Any]) -> str:
    bench = report["bench"]
    task = report["task"]
    text = (f"Task: {task['name']} ({task['kind']}); primary metric: {_metric(report)}"
            + (" (against the teacher's answers)" if task.get("references") in ("teacher", "mixed")
               else "") + ". "
            f"Eval prompts: {bench.get('eval_rows')}, threads: {bench.get('threads')}, greedy "
            "decoding, each artifact in its own process after a warm-up. "
            + METRIC_HELP.get(task["kind"], "")
            + ("Invented spans = share of answers with a value of the task's copy_fields (names, "
               "places, products) that does not occur in the prompt. "
               if any(r.get("invented") is not None for r in bench["rows"]) else "")
            + ("95% interval: percentile bootstrap of the primary metric over the eval prompts "
               "(the attribution's differences: paired, on the same prompts). "
               if any(r.get("ci") for r in bench["rows"]) else "") +
            "TTFT, prefill and decode tok/s are measured on the task's own prompts (each row with "
            "the prompt it needs: the teacher its few-shot prompt, the student a short one)"
            + _timed_on(bench["rows"]) + ".")
    if (where := report.get("benchmarked_on")) and where != "this build machine":
        text += f" Speed measured on {where}: not the hardware this profile targets."
    if syn := bench.get("synthetic"):
        text += (f" Fixed-length tests (llama-bench style, medians of {syn['repeats']}): prefill "
                 f"{syn['pp']} tokens, decode {syn['tg']} tokens through the harness and through a "
                 "bare llama-cpp-python loop on the same file; harness cost = 1 − harness/bare.")
    if any("other_cpu_pct" in r for r in bench["rows"]):
        text += (" other CPU %: the share of the machine's CPU that other processes used while "
                 "the row ran; ⚠ marks a row measured under contention (other processes > 15 % or "
                 "VM steal > 5 %, still so after one re-measure): its speed is not the artifact's.")
    for r in bench["rows"]:
        if st := r.get("stopped"):
            text += (f" † {r['label']}: {st['text']} — its quality columns are on those prompts "
                     f"(a uniform random sample of the eval set; a Hoeffding bound spent over "
                     f"{st['looks']} planned looks, so the chance of stopping a row that reaches "
                     "the bar is at most 5 %).")
    if n := bench.get("scored_rows"):
        text += (f" ppl: perplexity of the reference answers of the first {n} eval rows, "
                 "teacher-forced after the student's prompt; KL (mean, nats/token) and top-1 "
                 "agreement on those tokens vs the fp32 distilled student (torch); – where the "
                 "vocabulary or prompt differs.")
    return text


def render_markdown(report: dict[str, Any]) -> str:
    """The human report as Markdown."""
    rows, cols = report["bench"]["rows"], columns(report)
    lines = [f"# distill-edge report — target `{report['target']}`", "",
             "| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r, k, f) for _, k, f in cols) + " |" for r in rows]
    lines += ["", _caption(report)]
    for heading, paragraphs in _sections(report):
        lines += ["", f"## {heading}", "", *[f"- {p}" if len(paragraphs) > 1 else p
                                               for p in paragraphs]]
    return "\n".join(lines) + "\n"


def render_html(report: dict[str, Any]) -> str:
    """One self-contained HTML file: table, verdict, sections and embedded PNG plots."""
    from pipeline.report import plots

    rows, esc, cols = report["bench"]["rows"], html.escape, columns(report)
    metric = report["task"]["metric"]
    head = "".join(f"<th>{esc(h)}</th>" for h, _, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(r, k, f))}</td>" for _, k, f in cols)
                   + "</tr>" for r in rows)
    figures = [("Quality vs size", plots.quality_vs_size(rows, metric)),
               ("Decode speed", plots.decode_speed(rows))]
    shipped = shipped_row(rows)
    if shipped and (confusion := (shipped.get("details") or {}).get("confusion")):
        figures.append((f"Confusion matrix: {shipped['label']}", plots.confusion(confusion)))
    if curve := report.get("training_curve"):
        figures.append(("Training loss", plots.loss_curve(curve)))
    if data := report.get("data"):
        figures.append(("Teacher data", plots.data_card(data)))
    sections = "".join(f"<h2>{esc(h)}</h2>" + "".join(f"<p>{esc(p)}</p>" for p in ps)
                       for h, ps in _sections(report))
    imgs = "".join(f'<figure><img alt="{esc(t)}" src="{uri}"><figcaption>{esc(t)}</figcaption>'
                   "</figure>" for t, uri in figures)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 7px;text-align:right}td:first-child{text-align:left}"
             "figure{display:inline-block;margin:6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>distill-edge report "
            f"{esc(report['target'])}</title><style>{style}</style></head><body>"
            f"<h1>distill-edge report — target {esc(report['target'])}</h1>"
            f"<table><tr>{head}</tr>{body}</table><p>{esc(_caption(report))}</p>{sections}"
            f"<h2>Plots</h2>{imgs}</body></html>\n")
