"""Constrained decoding: the task's answer grammar, and the token mask that enforces it.

The grammar comes from llguidance — the engine behind llama.cpp's `LLAMA_LLGUIDANCE` grammars
and onnxruntime-genai's `set_guidance` — not from llama-cpp-python's own JSON-schema→GBNF
converter: that one (0.3.36) turns the default task's `"pattern": "\\S"` into an assertion
error, writes `\\d` as a literal and lets `"` through in patterned strings (checked here).
- json tasks: the task's JSON Schema, compact (no free whitespace) and with every free string
  bounded (`bounded`): nothing to loop on until `max_tokens`; a schema llguidance cannot
  express, or expresses with a warning (a loosened keyword), is refused in one line instead
  of silently loosened. The task's `copy_fields` (string fields copied from the message) are
  named in the grammar (runkit.grammar.COPY_KEY): each answer's grammar limits them to spans of
  its own message (runkit.grammar.for_message). Its `date_fields` (format "date") are named
  too (runkit.dates.DATE_KEY): each answer's date is built from the year, month and day its
  message names (runkit.dates.date_pattern).
- label tasks: one of the labels, exactly.
- text tasks: no grammar (refused).

The mask that enforces it is `pipeline.runkit.grammar.GrammarMask` (a bundle's run.py and the
bench decode with the same one). Once it allows only the end-of-sequence token, the answer
is complete: greedy decoding stops there, so a constrained answer always parses unless it
hits `max_tokens`.

Example:
    >>> from pipeline.constrain import grammar_for
    >>> from pipeline.tasks.base import TaskSpec
    >>> '"billing"' in grammar_for(TaskSpec(name="t", kind="label", labels=("billing", "other")))
    True
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline.errors import UserError
from pipeline.runkit.dates import DATE_KEY
from pipeline.runkit.grammar import COPY_KEY, grammar_problems
from pipeline.tasks.base import TaskSpec

if TYPE_CHECKING:
    from pipeline.config import BuildConfig


class NoGrammar(UserError):
    """The task has no grammar, or one llguidance cannot express exactly (`why`)."""

    def __init__(self, spec: TaskSpec, why: str) -> None:
        self.why = f"task '{spec.name}' {why}"
        super().__init__(f"constrained decoding: {self.why}; set constrained = false in the "
                         "target file")


MAX_STRING = 64  # characters of a schema string without its own bound (see bounded())


def bounded(schema: Any) -> Any:
    """The schema with `maxLength: MAX_STRING` on every free string (no maxLength, enum,
    const or format of its own), at any depth. Stricter than the schema, never looser: a
    grammar keeps an answer valid only while it ends, and the default build's F16 student
    looped inside a string ("noxonononono…") on 2 of 95 eval prompts until max_tokens even
    under the grammar; bounded, the string closes and the answer still parses."""
    if isinstance(schema, list):
        return [bounded(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) for k, v in schema.items()}
    if out.get("type") == "string" and not {"maxLength", "enum", "const", "format"} & set(out):
        out["maxLength"] = MAX_STRING
    return out


def shipped_grammar(spec: TaskSpec, date_fields: tuple[str, ...], constrained: bool
                    ) -> tuple[str, str]:
    """(the grammar a target's answers decode under, why there is none): a constrained
    target (one whose runtime can constrain) ships the task's grammar when the task has one,
    and free decoding — said in the report — when it has none."""
    if not constrained:
        return "", ""
    try:
        return grammar_for(spec, date_fields), ""
    except NoGrammar as exc:
        return "", exc.why


def teacher_grammar(spec: TaskSpec, date_fields: tuple[str, ...], backend: str,
                    constrained: bool) -> tuple[str | None, str]:
    """(the grammar the teacher answers under, why there is none): `[teacher] constrained`
    asks for the task's grammar — the one the student ships with — where the backend can
    take it (pipeline.generation.backends.GRAMMARS)."""
    from pipeline.generation.backends import takes_grammar

    if not constrained:
        return None, ""
    try:
        grammar = grammar_for(spec, date_fields)
    except NoGrammar as exc:
        return None, exc.why
    if not takes_grammar(backend, grammar):
        return None, f"the {backend} teacher backend cannot decode under this task's grammar"
    return grammar, ""


def grammar_settings(config: BuildConfig) -> dict[str, str]:
    """The teacher stages' grammar settings (teacher_check, teacher): only what is set, so an
    unconstrained teacher keeps its cache key."""
    t, task = config.teacher, config.task
    grammar, why = teacher_grammar(task.spec, task.date_fields, t.backend, t.constrained)
    if grammar:
        return {"grammar": grammar}
    return {"grammar_skipped": why} if why else {}


def grammar_for(spec: TaskSpec, date_fields: tuple[str, ...] = ()) -> str:
    """The llguidance grammar (its JSON form) every answer of this task must match;
    `date_fields`: the task's (a decoding rule, not part of scoring, so not in the spec)."""
    from llguidance import LLMatcher

    if spec.kind == "json" and spec.json_schema:
        grammar = LLMatcher.grammar_from_json_schema(
            bounded(spec.json_schema), overrides={"whitespace_flexible": False})
        # the fields the task config checked, named for for_message to fill in per message
        named = {k: list(v) for k, v in ((COPY_KEY, spec.copy_fields), (DATE_KEY, date_fields)) if v}
        if named:
            grammar = json.dumps({**json.loads(grammar), **named}, ensure_ascii=False)
    elif spec.kind == "label" and spec.labels:
        grammar = LLMatcher.grammar_from_lark(
            "start: " + " | ".join(json.dumps(label) for label in spec.labels))
    else:
        raise NoGrammar(spec, f"of kind '{spec.kind}' has no answer grammar (json and label "
                            "tasks have one)")
    is_error, problems = grammar_problems(grammar)
    if is_error or problems:
        raise NoGrammar(spec, "has a schema the grammar cannot express exactly: "
                            + " ".join(problems))
    return grammar
