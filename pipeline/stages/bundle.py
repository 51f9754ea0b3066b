"""Bundle stage: everything needed to run the shipped student, in one folder per target.

setup: the target's export (GGUF file or onnxruntime-genai folder), the student's HF folder
       (tokenizer + chat template) and the build's report.json (the numbers for the card).
run:   write `bundle/`: a runnable folder (pipeline.runnable) with
         the artifact (GGUF: the file; ONNX: the builder's folder layout — model.onnx(+data),
           genai_config.json, tokenizer files — at the bundle's top level, as
           onnxruntime-genai loads it),
         tokenizer files and chat template, generation.json (system prompt and user template
           the student was trained with, greedy decoding, max_tokens, context, threads),
         run.py and runkit/ (the runnable snippet: `pipeline/runkit/launcher.py` and the
           `pipeline/runkit` package, copied verbatim — they need only the bundle and its
           runtime), README.md (model card: lineage, data card summary,
           quality and speed numbers, quality gate, how to run it), and for GGUF an Ollama
           Modelfile.
The runner publishes it as build/<target>/bundle/.

Example:
    distill-edge build --target cpu-int4
    distill-edge run build/cpu-int4/bundle "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
    python build/cpu-int4/bundle/run.py "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import BuildConfig
from pipeline.constrain import shipped_grammar
from pipeline.measure.quant_mix import mix_line
from pipeline.measure.roles import Role
from pipeline.measure.search import shipped_quant
from pipeline.outputs import PROMPT_FORMAT, BenchRow, BundleSummary, Report, read_json, read_report
from pipeline.runnable import SCHEMA_FILE, Runnable, RunSettings, runnable_of, write_runnable
from pipeline.stage import Runtime, StageContext
from pipeline.targets import Target

# Ollama TEMPLATEs per chat-template family, found by a marker in the HF chat template
# (data: add a row for another family). Unknown families get no TEMPLATE line: Ollama then
# reads the GGUF's own tokenizer.chat_template.
OLLAMA_TEMPLATES: dict[str, tuple[str, str]] = {
    "<|im_start|>": (  # ChatML (SmolLM2, Qwen2.5)
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
        "<|im_end|>"),
}


def modelfile(artifact: str, gen: RunSettings, chat_template: str) -> str:
    """An Ollama Modelfile: the GGUF, the trained system prompt, greedy defaults."""
    lines = ["# Ollama: ollama create my-student -f Modelfile && ollama run my-student \"prompt\"",
             f"FROM ./{artifact}"]
    family = next((v for k, v in OLLAMA_TEMPLATES.items() if k in (chat_template or "")), None)
    if family:
        lines.append(f'TEMPLATE """{family[0]}"""')
        lines.append(f'PARAMETER stop "{family[1]}"')
    if gen["user_template"] != "{prompt}":
        lines.append(f"# the student was trained with user messages of the form {gen['user_template']!r}")
    if gen.get("grammar"):  # Ollama takes an answer schema per request, not in a Modelfile
        lines.append("# constrained target: pass the answer schema with each request (Ollama "
                     "structured outputs), e.g. curl localhost:11434/api/chat -d "
                     "'{\"model\": \"my-student\", \"format\": '\"$(cat " + SCHEMA_FILE + ")\"', …}'"
                     " (the schema only: copying fields from the prompt word for word needs "
                     "run.py or distill-edge serve)"
                     if gen.get("schema") else
                     "# constrained target: Ollama's `format` takes a JSON schema, not this "
                     "task's label grammar: use run.py for constrained answers")
    lines += [f'SYSTEM """{gen["system"]}"""', "PARAMETER temperature 0",
              f"PARAMETER num_ctx {gen['n_ctx']}", f"PARAMETER num_predict {gen['max_tokens']}"]
    return "\n".join(lines) + "\n"


def _row_line(bench_row: BenchRow, metric: str) -> str:
    row = bench_row.model_dump()  # the metric columns are named by the task
    cells = [row["label"], f"{row.get('file_mb', 0):.1f}", f"{row.get(metric) or 0:.3f}",
             f"{row.get('decode_tok_s') or 0:.1f}"]
    kl, same = row.get("kl_vs_reference"), row.get("greedy_agreement")
    cells += ["–" if kl is None else f"{kl:.4f}", "–" if same is None else f"{same:.2f}"]
    return "| " + " | ".join(cells) + " |"


def model_card(s: BundleSettings, report: Report, gen: RunSettings) -> str:
    """README.md of the bundle: what it is, where it came from, how good and fast, how to run."""
    rows, data, training = report.bench.rows, report.data, report.training
    quant = shipped_quant(report.bench.model_dump(), s.quant)
    decision, metric, mix = report.decision, report.task.metric, report.quant_mix
    examples, steps = (training.examples, training.steps) if training else ("?", "?")
    losses = (training.first_eval_loss, training.final_eval_loss) if training else ("?", "?")
    lines = [
        f"# {s.task} student — target `{s.target}` ({s.format} {quant})", "",
        f"Built by distill-edge. Runtime: {s.runtime}"
        + (f" ({s.execution_provider} execution provider)" if s.providers > 1 else "")
        + f". Numbers measured on {s.benchmarked_on}, {report.bench.threads} threads.",
        "", "## Lineage", "",
        f"- teacher: `{s.teacher}` answered {data.rows_in} task prompts",
        f"- filter: kept {data.kept}, dropped {data.dropped} ({json.dumps(data.drops_by_reason)})",
        f"- student: `{s.student}` fine-tuned on the kept answers ({examples} examples, {steps} "
        f"steps; held-out loss {losses[0]} → {losses[1]})",
        f"- export: {s.format} {quant} (`{gen['model']}`)"
        + (f" — as written: {mix_line(mix)}" if mix else ""), "",
        "## Quality and speed (held-out eval prompts)", "",
        f"| artifact | size MB | {metric.replace('_', ' ')} | decode tok/s | KL vs fp32 student "
        "| same answer as fp32 |",
        "|---|---|---|---|---|---|",
        *[_row_line(r, metric) for r in rows
          if r.role in (Role.TEACHER, Role.BASE, Role.DISTILLED_TORCH, Role.DISTILLED)],
        "", f"Verdict: {report.verdict.text}", "",
        f"Decision: {decision.sentence}"
        + "".join(f"\n- {c.outcome}: {c.text}" for c in decision.checks),
        "", "## Run it", "", "```sh", "python run.py \"your prompt\"          # needs only this folder",
        "distill-edge run . \"your prompt\"", "```"]
    lines += ["", *(n.format(model=gen["model"]) for n in s.notes)]  # the format's own words
    lines += ["", "## Prompt format", "", "System prompt (the student was trained with it; keep it):",
              "", "```", gen["system"], "```", "",
              f"User message: `{gen['user_template']}`. Decoding: greedy, at most "
              f"{gen['max_tokens']} new tokens"
              + (f", under the task's grammar (`{gen['grammar']}`, llguidance: `run.py` needs "
                 "`pip install llguidance`; every answer that ends parses, and the fields it "
                 "names under `copy_spans` are copied from the prompt word for word)."
                 if gen.get("grammar")
                 else ".")]
    return "\n".join(lines) + "\n"


class BundleSettings(Runnable):
    """The runnable folder's facts, and what the model card says (the format's from
    pipeline.formats)."""

    target: str
    quant: str
    providers: int  # execution providers the format offers (> 1: name the chosen one)
    modelfile: bool  # an Ollama Modelfile beside the artifact
    notes: list[str]
    runtime: str
    benchmarked_on: str
    task: str
    teacher: str
    student: str


class BundleStage:
    name = "bundle"
    libraries = ()
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> BundleSettings:
        def who(src: Any) -> str:  # a catalog name, a path, or an endpoint's model
            return (src.model or src.path
                    or f"{getattr(src, 'model_name', '')} at {getattr(src, 'base_url', '')}")

        fmt = target.fmt
        grammar = shipped_grammar(config.task.spec, config.task.date_fields, target.constrained)[0]
        return BundleSettings(
            **runnable_of(target, config.bench.max_tokens, grammar),
            target=target.name, quant=target.quant, providers=len(fmt.execution_providers),
            modelfile=fmt.ollama_modelfile, notes=list(fmt.notes), runtime=target.runtime,
            benchmarked_on=target.benchmarked_on, task=config.task.name,
            teacher=who(config.teacher), student=who(config.student))

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[BundleSettings]) -> BundleSummary:
        s, export = ctx.settings, ctx.inputs["export"]
        doc = read_report(ctx.inputs["report"])
        if not doc.decision.ship:  # nothing deployable from a refused artifact
            ctx.log(f"no bundle: {doc.decision.sentence}")
            return BundleSummary(files=[], skipped="not shipped (see the report's decision)")
        bundle = ctx.out_dir / "bundle"
        shipped = next(r for r in doc.bench.rows if r.role == Role.DISTILLED)  # the search's pick
        gen = write_runnable(bundle, s, export=export, tokenizer=ctx.inputs["distill"],
                             artifact=shipped.file)
        (bundle / "README.md").write_text(model_card(s, doc, gen))
        if s.modelfile:
            chat_template = read_json(export, PROMPT_FORMAT).get("chat_template") or ""
            (bundle / "Modelfile").write_text(modelfile(gen["model"], gen, chat_template))
        files = sorted(p.name for p in bundle.iterdir())
        ctx.log(f"bundle: {', '.join(files)}")
        return BundleSummary(files=files)
