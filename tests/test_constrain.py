"""Constrained decoding: a grammar per task kind (or a one-line refusal), answers under it that
always parse even from a random model, and the report's free-vs-grammar pair."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pipeline.config import load_config
from pipeline.constrain import MAX_STRING, grammar_for
from pipeline.errors import UserError
from pipeline.measure.latency import bench_artifact, summarize_latency
from pipeline.prompts import ChatPrompt
from pipeline.report.render import grammar_lines
from pipeline.tasks.base import TaskSpec

SYS = ChatPrompt(system="Answer.")
PROMPTS = ["Ann Lee wants 2 lamps", "hello", "9 cups to Oslo on 2025-06-01", "?"]
# finite: every answer ends within max_tokens, whatever a random model prefers
SMALL = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9},
                                          "c": {"enum": ["red", "blue"]}},
         "required": ["n", "c"], "additionalProperties": False}


def test_the_default_task_and_a_label_task_have_grammars() -> None:
    assert json.loads(grammar_for(load_config(None).task.spec))["grammars"]
    labels = grammar_for(TaskSpec(name="t", kind="label", labels=("billing", 'say "hi"')))
    assert labels == 'start: "billing" | "say \\"hi\\""'


@pytest.mark.parametrize(("spec", "why"), [
    (TaskSpec(name="t", kind="text"), "of kind 'text' has no answer grammar"),
    (TaskSpec(name="t", kind="json", json_schema={
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)a"}}}),
     "cannot express exactly"),
])
def test_what_the_grammar_cannot_express_is_refused_in_one_line(spec: TaskSpec, why: str) -> None:
    with pytest.raises(UserError) as err:
        grammar_for(spec)
    assert why in str(err.value) and "\n" not in str(err.value)
    assert "set constrained = false" in str(err.value)


# a free string: the grammar bounds it (MAX_STRING characters), so it closes
FREE = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"],
        "additionalProperties": False}


@pytest.mark.parametrize("spec", [
    TaskSpec(name="t", kind="json", json_schema=SMALL),
    TaskSpec(name="t", kind="json", json_schema=FREE),
    TaskSpec(name="t", kind="label", labels=("billing", "shipping", "other")),
])
def test_a_random_model_answers_inside_the_grammar(tiny_f16: Path, spec: TaskSpec) -> None:
    """The tiny model is random: free, it never writes the answer; under the grammar every
    answer is one the task accepts, ends by itself (not cut at max_tokens, even in a string
    the schema leaves unbounded), and the child reports the truncation share."""
    free = bench_artifact(tiny_f16, SYS, PROMPTS, threads=1, n_ctx=256, max_tokens=80, warmup=0)
    held = bench_artifact(tiny_f16, SYS, PROMPTS, threads=1, n_ctx=256, max_tokens=80, warmup=0,
                          grammar=grammar_for(spec))
    answers = [r["response"] for r in held["results"]]
    if spec.kind == "json":
        for answer in answers:
            jsonschema.validate(json.loads(answer), spec.json_schema)
            assert len(json.loads(answer).get("s", "")) <= MAX_STRING
        assert not any(r["response"].startswith("{") for r in free["results"])
    else:
        assert set(answers) <= set(spec.labels)
    assert summarize_latency(held)["truncated"] == 0.0
    assert summarize_latency(free)["truncated"] > 0  # random text runs to max_tokens


def test_copy_fields_are_decoded_as_spans_of_each_message(tiny_f16: Path) -> None:
    """A json task's copy fields: the grammar names them, each answer's grammar makes them a
    choice of its own message's word spans (as written), so even the random tiny model
    copies; other fields, and label grammars, are untouched."""
    from pipeline.runkit.grammar import COPY_KEY, for_message, message_spans

    spans = message_spans("Hi, Jean-Baptiste O'Brien: 3 USB-C hubs to St. John's.", 3)
    assert {"Jean-Baptiste O'Brien", "USB-C hubs", "St. John's", "3"} <= set(spans)
    assert not {"ean", "Brien:", "hubs to St. John's"} & set(spans)  # words whole, <= 3 of them
    schema = {"type": "object", "properties": {"who": {"type": "string"}, "n": {
        "type": "integer", "minimum": 0, "maximum": 9}}, "required": ["who", "n"],
        "additionalProperties": False}
    spec = TaskSpec(name="t", kind="json", json_schema=schema, copy_fields=("who",))
    grammar = grammar_for(spec)
    assert json.loads(grammar)[COPY_KEY] == ["who"]
    one = json.loads(for_message(grammar, "Ann Lee, Oslo"))
    assert COPY_KEY not in one
    assert one["grammars"][0]["json_schema"]["properties"]["who"]["enum"] == [
        "Ann", "Ann Lee", "Ann Lee, Oslo", "Lee", "Lee, Oslo", "Oslo"]
    assert one["grammars"][0]["json_schema"]["properties"]["n"]["maximum"] == 9
    labels = grammar_for(TaskSpec(name="t", kind="label", labels=("a", "b")))
    assert for_message(labels, "Ann Lee") == labels and for_message(grammar, "...") == grammar
    prompts = ["Ann Lee wants 2 lamps", "Ngozi Eze - 2 fans - Enugu", "9 cups to Oslo please"]
    held = bench_artifact(tiny_f16, SYS, prompts, threads=1, n_ctx=256, max_tokens=80, warmup=0,
                          grammar=grammar)
    for prompt, result in zip(prompts, held["results"], strict=True):
        assert json.loads(result["response"])["who"] in message_spans(prompt)


FREE_DATE = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


@pytest.mark.parametrize(("message", "pattern"), [
    ("Bonjour, 9 desk frames, PO 7731. Delivery on 2 December 2026.", "^(2026)-(12)-(02)$"),
    ("20 yoga blocks on sat 13 june 2026?? thx", "^(2026)-(06)-(13)$"),
    ("i need 3 wheelbarows on 9 febuary 2026", "^(2026)-(02)-(09)$"),
    ("they have to be there by March thirty-first, twenty twenty-six", "^(2026)-(03)-(31)$"),
    ("* qty: 5\n* when: the twenty-second of March 2026, 3 boxes", "^(2026)-(03)-(22)$"),
    ("deliver by 17/04/2026 (account 554-2210)", "^(2026)-(04)-(04|17)$"),
    ("Sept. 5th or the 2026-09-07, quote 2026-114", "^(2026)-(09)-(05|07)$"),
    ("12 boxes in june 2026, on the 4th", "^(2026)-(06)-(04|12)$"),  # no day next to it: all
    ("2 lamps for Ann Lee in Oslo next Friday, room 2025", FREE_DATE),  # no month: all free
    ("2 lamps next Friday, call 555-12-34 or 12-34-56", FREE_DATE),  # not dates
])
def test_a_date_is_read_from_the_parts_its_message_names(message: str, pattern: str) -> None:
    """A date field's pattern per message: the year, month and day it names (digits, month
    names and misspellings, ordinals, numbers in words; a day beside its month when one is);
    what it does not name stays free."""
    from pipeline.runkit.dates import date_pattern

    assert date_pattern(message) == pattern


def test_date_fields_are_decoded_from_each_message(tiny_f16: Path) -> None:
    """A json task's date_fields: the grammar names them; even the random tiny model then
    writes a date made of the parts its message names; a field without "format": "date" is
    refused in the task config."""
    import re

    from pipeline.runkit.dates import DATE_KEY, date_pattern

    schema = {"type": "object", "properties": {"when": {"type": "string", "format": "date"}},
              "required": ["when"], "additionalProperties": False}
    grammar = grammar_for(TaskSpec(name="t", kind="json", json_schema=schema), ("when",))
    assert json.loads(grammar)[DATE_KEY] == ["when"]
    prompts = ["2 lamps on 3 May 2026", "Oslo, 14.12.2027", "the twenty-second of June 2026"]
    held = bench_artifact(tiny_f16, SYS, prompts, threads=1, n_ctx=256, max_tokens=40, warmup=0,
                          grammar=grammar)
    for prompt, result in zip(prompts, held["results"], strict=True):
        assert re.fullmatch(date_pattern(prompt), json.loads(result["response"])["when"])
    with pytest.raises(UserError, match="date_fields: 'name' is not a field"):
        load_config(None, {"task.date_fields": ["name"]})


def test_a_constrained_bundle_answers_under_its_grammar(tiny_f16: Path, tmp_path: Path) -> None:
    """run.py with generation.json's `grammar` (what a constrained target's bundle holds): the
    random tiny model answers with a label; the server's chat format (what `distill-edge
    serve` registers) gives the same answer; a damaged grammar file is one BundleError."""
    import shutil

    from llama_cpp import Llama

    from pipeline.runkit import run as run_bundle
    from pipeline.serve import CHAT_FORMAT, register_format

    labels = ("billing", "shipping", "other")
    shutil.copyfile(tiny_f16, tmp_path / "model.gguf")
    (tmp_path / "grammar.json").write_text(grammar_for(TaskSpec(name="t", kind="label",
                                                                labels=labels)))
    gen = {"format": "gguf", "model": "model.gguf", "system": "Route it.",
           "user_template": "{prompt}", "max_tokens": 16, "n_ctx": 256, "threads": 1,
           "grammar": "grammar.json"}
    (tmp_path / "generation.json").write_text(json.dumps(gen))
    settings = run_bundle.load_settings(tmp_path)
    llm = run_bundle.open_gguf(tmp_path, settings)
    answer = run_bundle.ask_gguf(llm, tmp_path, settings, "my parcel is late", 16)
    pieces: list[str] = []  # streamed (the device bench's path): the same answer, piece by piece
    assert run_bundle.ask_gguf(llm, tmp_path, settings, "my parcel is late", 16,
                               pieces.append) == answer
    assert "".join(pieces).strip() == answer
    assert answer in labels
    register_format(tmp_path / "model.gguf", settings, run_bundle.read_grammar(tmp_path, settings))
    served = Llama(str(tmp_path / "model.gguf"), n_ctx=256, n_threads=1, chat_format=CHAT_FORMAT,
                   verbose=False).create_chat_completion(
        [{"role": "user", "content": "my parcel is late"}], max_tokens=16, temperature=0.0,
        top_k=1, repeat_penalty=1.0)
    assert served["choices"][0]["message"]["content"].strip() == answer
    (tmp_path / "grammar.json").write_text("start: (")
    with pytest.raises(run_bundle.BundleError, match="is not a valid grammar"):
        run_bundle.ask_gguf(llm, tmp_path, settings, "my parcel is late", 16)


def test_the_report_pairs_each_artifact_with_its_grammar_twin() -> None:
    rows = [{"role": "distilled", "label": "distilled Q4_K_M", "valid": 0.97, "truncated": 0.02,
             "field_accuracy": 0.88, "exact": 0.57, "decode_tok_s": 60.0},
            {"role": "distilled_grammar", "label": "distilled Q4_K_M + grammar", "grammar": True,
             "valid": 1.0, "truncated": 0.0, "field_accuracy": 0.9, "exact": 0.6,
             "decode_tok_s": 54.0}]
    lines = grammar_lines(rows, "field_accuracy")
    assert lines[0] == ("distilled Q4_K_M: valid 0.970 → 1.000, cut off at max_tokens 0.020 → "
                        "0.000, field accuracy 0.880 → 0.900, exact 0.570 → 0.600, decode "
                        "60.0 → 54.0 tok/s (10.0 % slower).")
    assert grammar_lines(rows[:1], "field_accuracy") == []


@pytest.mark.parametrize("constrained", [False, True])
def test_bench_rows_measure_each_distilled_artifact_both_ways(constrained: bool) -> None:
    """Free target: the distilled rows decode freely, their "+ grammar" twins under the grammar.
    Constrained target: the rows the gate and verdict read ("distilled", "distilled_fp") are
    the grammar's, the twins free. Twins are never scored teacher-forced (same log-probs)."""
    from types import SimpleNamespace

    from pipeline.stages.bench import BenchRuntime, BenchStage, _student_rows
    from pipeline.targets import load_target

    target = load_target("cpu-int4").model_copy(update={"constrained": constrained})
    s = BenchStage().settings(load_config(None), target)
    ctx = SimpleNamespace(settings=s, inputs={"base_export": Path("b"), "student_export": Path("s")},
                          runtime=BenchRuntime(adapter="llama_cpp"))
    rows = {r["role"]: r for r in _student_rows(ctx, None)}  # type: ignore[arg-type]
    twin = "_free" if constrained else "_grammar"
    assert list(rows) == ["base_fp", "base", "base_fewshot", "distilled_fp", "distilled",
                          "distilled_fp" + twin, "distilled" + twin]
    under = {role for role, r in rows.items() if r.get("grammar")}
    assert under == ({"distilled_fp", "distilled"} if constrained
                     else {"distilled_fp_grammar", "distilled_grammar"})
    assert not rows["distilled" + twin]["score"] and rows["distilled"]["score"]
    assert rows["distilled"]["label"] == "distilled Q4_K_M" + (" + grammar" if constrained else "")
    # not shipped: a constrained target's free twins answer batched; what ships never does
    assert rows["distilled" + twin]["batched"] is constrained and not rows["distilled"]["batched"]


def test_bounded_adds_a_length_only_to_free_strings() -> None:
    from pipeline.constrain import bounded

    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "maxLength": 5},
        "c": {"type": "string", "enum": ["x"]}, "d": {"type": "string", "format": "date"},
        "e": {"type": "array", "items": {"type": "string"}}}}
    props = bounded(schema)["properties"]
    assert props["a"]["maxLength"] == MAX_STRING and props["b"]["maxLength"] == 5
    assert "maxLength" not in props["c"] and "maxLength" not in props["d"]
    assert props["e"]["items"]["maxLength"] == MAX_STRING
    assert "maxLength" not in schema["properties"]["a"]  # the task's own schema is untouched


def test_the_modelfile_of_a_constrained_bundle_says_how_ollama_gets_the_schema() -> None:
    """Ollama takes a schema per request (`format`), not in a Modelfile: a json task's bundle
    names its schema.json there; a label task's says Ollama cannot hold its grammar."""
    from pipeline.runnable import SCHEMA_FILE
    from pipeline.stages.bundle import modelfile

    gen = {"user_template": "{prompt}", "system": "s", "n_ctx": 512, "max_tokens": 8,
           "grammar": "grammar.json"}
    json_task = modelfile("m.gguf", {**gen, "schema": SCHEMA_FILE}, "")
    assert f'"format": \'"$(cat {SCHEMA_FILE})"\'' in json_task
    assert "use run.py for constrained answers" in modelfile("m.gguf", gen, "")
    assert "constrained" not in modelfile("m.gguf", {**gen, "grammar": None}, "")


def test_a_constrained_target_ships_free_decoding_for_a_task_without_a_grammar() -> None:
    """A constrained profile (every GGUF one) decodes under the task's grammar when the task
    has one; a text task has none, so it ships free decoding and the bench says why."""
    from pipeline.constrain import shipped_grammar

    grammar, why = shipped_grammar(TaskSpec(name="t", kind="text"), (), True)
    assert grammar == "" and "of kind 'text' has no answer grammar" in why
    labels = TaskSpec(name="t", kind="label", labels=("a", "b"))
    assert shipped_grammar(labels, (), True)[0] == grammar_for(labels)
    assert shipped_grammar(labels, (), False) == ("", "")


def test_an_onnx_artifact_decodes_under_the_grammar(tiny_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """onnxruntime-genai takes the task grammar too (its logits masked per token, as the
    bundle's run.py does): the random tiny model copies spans and writes parsing answers in
    the bench, and a constrained ONNX bundle answers with a label."""
    import shutil

    from pipeline.runkit import run as runkit_run
    from pipeline.runkit.grammar import message_spans

    folder = tiny_onnx("int4")[0] / "onnx-int4"
    schema = {"type": "object", "properties": {"who": {"type": "string"}, "n": {
        "type": "integer", "minimum": 0, "maximum": 9}}, "required": ["who", "n"],
        "additionalProperties": False}
    grammar = grammar_for(TaskSpec(name="t", kind="json", json_schema=schema, copy_fields=("who",)))
    prompts = ["Ann Lee wants 2 lamps", "Ngozi Eze - 2 fans - Enugu"]
    held = bench_artifact(folder, SYS, prompts, threads=1, n_ctx=256, max_tokens=40, warmup=0,
                          runtime="onnxruntime", grammar=grammar)
    for prompt, result in zip(prompts, held["results"], strict=True):
        answer = json.loads(result["response"])
        assert answer["who"] in message_spans(prompt) and 0 <= answer["n"] <= 9
    bundle = shutil.copytree(folder, tmp_path / "bundle")
    labels = ("billing", "shipping", "other")
    (bundle / "grammar.json").write_text(grammar_for(TaskSpec(name="t", kind="label", labels=labels)))
    gen = {"format": "onnx", "model": ".", "system": "Route it.", "user_template": "{prompt}",
           "max_tokens": 16, "threads": 1, "grammar": "grammar.json"}
    (bundle / "generation.json").write_text(json.dumps(gen))
    assert runkit_run.answer(bundle, "my parcel is late") in labels
