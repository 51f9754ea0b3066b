"""The grammar engine a bundle decodes under (llguidance): a task grammar made concrete
for one message, and the token mask that enforces it. Shipped in bundles (runkit): only
the standard library, llguidance and numpy.

A json grammar may name copy fields (COPY_KEY: values copied from the message, as a choice
of its spans) and date fields (DATE_KEY: a date made of the parts the message names,
pipeline.runkit.dates).

Example:
    >>> from pipeline.runkit.grammar import message_spans
    >>> message_spans("Ann Lee, Oslo", 2)
    ['Ann', 'Ann Lee', 'Lee', 'Lee, Oslo', 'Oslo']
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

from .dates import DATE_KEY, date_pattern


def last_user(messages: list[dict[str, Any]]) -> str:
    """The last user turn's text: the task text a client sends, or the wrapped turn being
    answered (what a grammar's copy fields are copied from)."""
    return str(next((m.get("content") or "" for m in reversed(messages)
                     if m.get("role") == "user"), ""))


def llama_vocab(llm: Any) -> Any:
    """llguidance's view of a llama-cpp-python model's vocabulary (~1 s: build it once)."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():  # it calls a deprecated llama_cpp function per token
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(llm._model.vocab)


def hf_vocab(tokenizer_json: Any, n_vocab: int, eos: list[int]) -> Any:
    """llguidance's view of an HF `tokenizer.json` (an onnxruntime-genai folder's), read by
    llguidance's own tokenizers binding: no transformers in a bundle. `n_vocab`: the model's
    logit width; `eos`: the ids that end an answer."""
    from pathlib import Path

    from llguidance import LLTokenizer

    return LLTokenizer(Path(tokenizer_json).read_text(encoding="utf-8"), n_vocab=n_vocab,
                       eos_token=eos)


# A json grammar may name fields whose value is copied from the message (the task's
# copy_fields): distill-edge's own key beside llguidance's, which llguidance ignores.
COPY_KEY = "copy_spans"
# A word of a message: letters/digits, joined by the marks names and products carry inside
# ("Jean-Baptiste", "O'Brien", "USB-C", "27-inch", "St.John").
WORD = re.compile(r"\w+(?:[-'\u2019.&/]\w+)*")
SPAN_WORDS = 8  # the longest copied value, in words ("Leticia Ramírez de la Cruz" is 5)


def message_spans(message: str, max_words: int = SPAN_WORDS) -> list[str]:
    """Every run of 1..max_words consecutive words of the message, exactly as written
    (case, accents and the marks between the words kept), first occurrence first."""
    words = [m.span() for m in WORD.finditer(message)]
    spans = (message[start:words[j][1]] for i, (start, _) in enumerate(words)
             for j in range(i, min(i + max_words, len(words))))
    return list(dict.fromkeys(spans))


def for_message(grammar: str, message: str) -> str:
    """The grammar one answer decodes under: a json grammar's copy fields (COPY_KEY) become
    a choice of the message's spans, so a name, place or product is copied, never made up
    or garbled (a 4-bit 135M student wrote "Hollywood" for Hyderabad, "hammersocks" for
    hammocks); its date fields (DATE_KEY) a date made of the parts the message names
    (date_pattern: it wrote 2026-12-22 for "2 December 2026"). Other grammars are unchanged."""
    try:
        spec = json.loads(grammar)
    except json.JSONDecodeError:  # a lark grammar (label tasks): nothing to copy
        return grammar
    if not isinstance(spec, dict):
        return grammar
    fields, dates = spec.pop(COPY_KEY, []), spec.pop(DATE_KEY, [])
    spans = message_spans(message) if fields else []  # a date-only grammar needs no spans
    if not (fields and spans) and not dates:
        return grammar
    props = spec["grammars"][0]["json_schema"]["properties"]
    if fields and spans:
        props.update({field: {"type": "string", "enum": spans} for field in fields})
    if dates:  # one pattern per message, whatever the number of date fields
        pattern = date_pattern(message)
        props.update({field: {"type": "string", "pattern": pattern} for field in dates})
    return json.dumps(spec, ensure_ascii=False)


def json_schema(grammar: str, message: str = "") -> dict[str, Any] | None:
    """The JSON schema of a json grammar, made concrete for `message` (for_message: copy
    fields as an enum of its spans, dates as their pattern) — what engines other than
    llguidance take; None for a lark grammar (a label task's)."""
    try:
        spec = json.loads(for_message(grammar, message))
    except json.JSONDecodeError:
        return None
    schema: dict[str, Any] | None = spec["grammars"][0].get("json_schema")
    return schema


def structured_output(grammar: str, message: str) -> dict[str, str]:
    """The grammar of one answer as openvino-genai's `StructuredOutputConfig` takes it (its
    xgrammar engine; it has no per-token hook for llguidance): the json schema made concrete
    for the message, or a label grammar (`start: "a" | "b"`, lark) as the same rule in EBNF."""
    schema = json_schema(grammar, message)
    if schema is not None:
        return {"json_schema": json.dumps(schema, ensure_ascii=False)}
    head, _, rule = grammar.partition(":")  # lark: only the one-rule form of a label grammar
    if head.strip() != "start" or "\n" in rule.strip():
        raise ValueError("only a json schema or a one-rule label grammar has an "
                         "openvino-genai form")
    return {"grammar": "root ::=" + rule}


def grammar_problems(grammar: str) -> tuple[bool, list[str]]:
    """llguidance's check of a grammar as an answer sees it (copy fields as a choice of a
    message's spans): (is it an error, its errors and warnings, one line each)."""
    from llguidance import LLMatcher

    is_error, problems = LLMatcher.validate_grammar_with_warnings(
        for_message(grammar, "Ann Lee, 2 lamps, Oslo, 3 May 2026"))
    return is_error, [" ".join(str(p).split()) for p in problems]


class GrammarMask:
    """A llama-cpp-python logits processor, one per answer: every logit the grammar does not
    allow next is set to -inf. The answer is the tokens after those of the first call (the
    prompt). `message` is the user turn it answers (for_message). distill-edge's bench uses
    this same class (pipeline.generation.llm)."""

    def __init__(self, vocab: Any, grammar: str, message: str = "") -> None:
        from llguidance import LLMatcher

        self.matcher = LLMatcher(vocab, for_message(grammar, message))
        if self.matcher.is_error():
            raise ValueError(self.matcher.get_error())
        self.seen: int | None = None  # tokens already given to the matcher

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self.seen is None:
            self.seen = len(input_ids)
        self.matcher.consume_tokens([int(t) for t in input_ids[self.seen:]])
        self.seen = len(input_ids)
        if self.matcher.is_error():
            raise RuntimeError(f"grammar matcher: {self.matcher.get_error()}")
        allowed = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8),
                                bitorder="little")[: len(scores)].astype(bool)
        scores[~allowed] = -np.inf
        return scores
