"""Answer a prompt with a distill-edge bundle, using nothing but the bundle folder.

This file ships verbatim in every bundle as `run.py`, and `distill-edge run` calls it: so it
imports only the standard library and the artifact's runtime (llama-cpp-python for GGUF,
onnxruntime-genai for ONNX, openvino-genai for OpenVINO), never distill-edge itself.
`generation.json` in the bundle says which file to load, the system prompt and user template
the student was trained with, and the generation defaults (greedy, max_tokens, context,
threads) it was benchmarked with.

Example:
    python build/cpu-int4/bundle/run.py "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
    distill-edge run build/cpu-int4/bundle "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any

SETTINGS_FILE = "generation.json"


class BundleError(ValueError):
    """The folder is not a usable bundle (named in the message)."""


def load_settings(bundle: Path) -> dict[str, Any]:
    """The bundle's generation.json; a missing or unreadable one is a BundleError."""
    path = bundle / SETTINGS_FILE
    if not path.is_file():
        raise BundleError(f"{bundle} is not a distill-edge bundle: no {SETTINGS_FILE} "
                          "(give a build/<target>/bundle folder)")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    missing = {"format", "model", "system", "user_template", "max_tokens"} - set(settings)
    if missing:
        raise BundleError(f"{path} lacks {', '.join(sorted(missing))}: rebuild the bundle")
    return settings


def last_user(messages: list[dict[str, Any]]) -> str:
    """The last user turn's text: the task text a client sends, or the wrapped turn being
    answered (what a grammar's copy fields are copied from)."""
    return str(next((m.get("content") or "" for m in reversed(messages)
                     if m.get("role") == "user"), ""))


def messages(settings: dict[str, Any], prompt: str) -> list[dict[str, str]]:
    """The exact messages the student was trained with, around the user's prompt."""
    out = [{"role": "system", "content": settings["system"]}]
    for shot in settings.get("few_shot", []):  # worked examples, if the student has any
        out += [{"role": "user", "content": settings["user_template"].format(prompt=shot["user"])},
                {"role": "assistant", "content": shot["assistant"]}]
    return out + [{"role": "user", "content": settings["user_template"].format(prompt=prompt)}]


def answer_gguf(bundle: Path, settings: dict[str, Any], prompt: str, max_tokens: int) -> str:
    """Greedy chat completion with llama-cpp-python (the GGUF's own chat template)."""
    from llama_cpp import Llama

    threads = int(settings.get("threads", 2))
    try:
        llm = Llama(model_path=str(bundle / settings["model"]), n_ctx=int(settings.get("n_ctx", 1024)),
                    n_threads=threads, n_threads_batch=threads, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"cannot load {bundle / settings['model']}: {exc}") from None
    chat = messages(settings, prompt)
    out = llm.create_chat_completion(chat, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                     repeat_penalty=1.0,
                                     logits_processor=grammar_mask(bundle, settings, llm,
                                                                   last_user(chat)))
    return str(out["choices"][0]["message"]["content"] or "").strip()


def read_grammar(bundle: Path, settings: dict[str, Any]) -> str | None:
    """The grammar generation.json names (a constrained target), checked by llguidance; None
    without one; an unreadable or invalid file is one BundleError."""
    if not settings.get("grammar"):
        return None
    path = bundle / settings["grammar"]
    try:
        grammar = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read the grammar {path}: {exc}") from None
    is_error, problems = grammar_problems(grammar)
    if is_error:
        raise BundleError(f"{path} is not a valid grammar: {' '.join(problems)[:200]}")
    return grammar


def grammar_mask(bundle: Path, settings: dict[str, Any], llm: Any, message: str) -> Any:
    """With a `grammar` in generation.json (a constrained target): a logits processor that
    masks every token the task's grammar (llguidance) does not allow next, so an answer that
    ends always parses; `message` (the user turn) bounds its copy fields (for_message)."""
    grammar = read_grammar(bundle, settings)
    if grammar is None:
        return None
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([GrammarMask(llama_vocab(llm), grammar, message)])


def llama_vocab(llm: Any) -> Any:
    """llguidance's view of a llama-cpp-python model's vocabulary (~1 s: build it once)."""
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():  # it calls a deprecated llama_cpp function per token
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(llm._model.vocab)


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


# Date fields (format "date") whose year, month and day are read in the message (the task's
# date_fields): named under this key, like COPY_KEY.
DATE_KEY = "date_parts"
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
_ONES = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_NTHS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
         "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()
NUMBER_WORDS = {w: i + 1 for words in (_ONES, _NTHS) for i, w in enumerate(words)} | {
    "twenty": 20, "twentieth": 20, "thirty": 30, "thirtieth": 30}
# a numeric date: 17/04/2026, 30.06.2026, 2026-05-11, 2026/09/18 (not 554-2210, 4410-22)
NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})([./-])(\d{1,2})\2(\d{2,4})(?!\d)")
DAY_GAP = 8  # characters between a day and its month: "12th of march", "March the 4th"
FREE_PARTS = (r"\d{4}", "(0[1-9]|1[0-2])", "(0[1-9]|[12][0-9]|3[01])")  # year, month, day


def _month(word: str) -> int | None:
    """1..12 for a month's name, abbreviation or misspelling ("Sept", "febuary"), else None."""
    for number, name in enumerate(MONTHS, 1):
        if word == name or word == name[:3] or (len(word) >= 4 and name.startswith(word)) or (
                word[:3] == name[:3] and difflib.SequenceMatcher(None, word, name).ratio() >= 0.8):
            return number
    return None


def _number_words(words: list[str]) -> list[tuple[int, int, int]]:
    """(value, index of its first word, of its last) of the numbers written in words:
    "twenty-second" 22."""
    out, i = [], 0
    while i < len(words):
        value = NUMBER_WORDS.get(words[i])
        if value is not None:
            start = i
            if value in (20, 30) and i + 1 < len(words) and NUMBER_WORDS.get(words[i + 1], 99) < 10:
                i += 1
                value += NUMBER_WORDS[words[i]]
            out.append((value, start, i))
        i += 1
    return out


def _numeric_dates(text: str) -> list[tuple[int, set[int], set[int]]]:
    """(year, its possible months, its possible days) of each numeric date: y-m-d, or d/m/y
    and m/d/y (both orders kept); a phone or account number shaped like one (555-12-34) is
    none."""
    out = []
    for m in NUMERIC_DATE.finditer(text):
        a, b, c = m.group(1), m.group(3), m.group(4)
        if len(a) == 4:
            year, months, days = int(a), {int(b)}, [int(c)]
        elif len(a) <= 2 and len(c) != 3:
            year, months, days = int(c) + (2000 if len(c) == 2 else 0), {int(a), int(b)}, [int(a), int(b)]
        else:
            continue
        months = {x for x in months if 1 <= x <= 12}
        if 1900 <= year <= 2199 and months and all(1 <= d <= 31 for d in days):
            out.append((year, months, set(days)))
    return out


def _close(between: str) -> bool:
    """Whether a number and a month are one date: a few characters apart, no other number
    between ("March 4", "the 12th of march"; not the 3 of "March 2026, 3 boxes")."""
    return len(between) <= DAY_GAP and not any(c.isdigit() for c in between)


def _days(low: str, words: list[tuple[str, int, int]], named: list[tuple[int, int, int]],
          spelled: list[tuple[int, int, int]]) -> set[int]:
    """The numbers 1..31 of the message (digits, ordinals, words) that may be a day: those
    next to a month's name ("30 January", "the 12th of march", "June 4") when there are any,
    else all of them (the student copied a count, "qty: 5", into "30 January"'s day)."""
    found = [(int(m.group(1)), m.start(), m.end())
             for m in re.finditer(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?(?!\d)", low)]
    found += [(v, words[i][1], words[j][2]) for v, i, j in spelled]
    found = [(v, a, b) for v, a, b in found if 1 <= v <= 31]
    near = {v for v, a, b in found for _, start, end in named
            if (b <= start and _close(low[b:start])) or (end <= a and _close(low[end:a]))}
    return near or {v for v, _, _ in found}


def date_parts(message: str) -> tuple[set[int], set[int], set[int]]:
    """The years, months and days the message names: a month by name or in a numeric date;
    its days (numbers 1..31, in digits or words: _days) only when a month is named; a year as
    four digits shortly after a month's name, in a numeric date, or in words ("twenty
    twenty-six")."""
    low = message.lower()
    words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"[^\W\d_]+", low)]
    named = [(n, start, end) for w, start, end in words if len(w) >= 3 and (n := _month(w))]
    years, months = set(), {n for n, _, _ in named}
    numeric_days: set[int] = set()
    for year, possible, days in _numeric_dates(low):
        years.add(year)
        months |= possible
        numeric_days |= days
    for m in re.finditer(r"(?<!\d)(\d{4})(?!\d)", low):  # "3 February 2026", "June 29, 2026"
        if any(0 <= m.start() - end <= 24 for _, _, end in named):
            years.add(int(m.group(1)))
    spelled = _number_words([w for w, _, _ in words])
    in_words = [(x, y) for x, y in pairwise(spelled)  # "twenty twenty-six": a year, no day
                if x[0] in (19, 20) and y[1] == x[2] + 1 and 10 <= y[0] <= 99]
    years |= {100 * x[0] + y[0] for x, y in in_words}
    spelled = [n for n in spelled if not any(n in pair for pair in in_words)]
    days = numeric_days | (_days(low, words, named, spelled) if named else set())
    return {y for y in years if 1900 <= y <= 2199}, months, days


def date_pattern(message: str) -> str:
    """A date field's pattern for one message: YYYY-MM-DD built from the parts it names; a
    part it does not name stays free (any valid value)."""
    parts = [f"({'|'.join(f'{v:0{n}d}' for v in sorted(vals))})" if vals else free
             for vals, n, free in zip(date_parts(message), (4, 2, 2), FREE_PARTS, strict=True)]
    return "^" + "-".join(parts) + "$"


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


def _one_line(exc: BaseException) -> str:
    """A runtime's error as one line: ORT's carry newlines and a C++ signature before the
    cause, which follows its last "FAIL : "."""
    return " ".join(str(exc).split()).rsplit("FAIL : ", 1)[-1][:300]


def open_onnx(bundle: Path, threads: int) -> Any:
    """The model on its configured provider, or on CPU when that provider (CUDA) is absent;
    `threads` intra-op threads (ORT would otherwise take every core it sees)."""
    import onnxruntime_genai as og

    try:  # a damaged genai_config.json fails here, in the runtime's own JSON parser
        config = og.Config(str(bundle))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1,
            "log_severity_level": 4}}}}))  # errors come back as one line, not ORT's log too
        return og.Model(config)
    except Exception as exc:  # onnxruntime-genai raises plain RuntimeError/OrtException
        if "cuda" not in str(exc).lower():
            raise BundleError(f"cannot load {bundle}: {_one_line(exc)}") from None
    print(f"no CUDA here: running {bundle.name} on the CPU provider", file=sys.stderr)
    config.clear_providers()
    return og.Model(config)


def _onnx_text_side(bundle: Path, model: Any, settings: dict[str, Any],
                    prompt: str) -> tuple[Any, list[int], set[int]]:
    """The folder's tokenizer, the prompt's ids through its chat template, and the eos ids;
    a damaged tokenizer, template or genai_config.json is a BundleError."""
    import onnxruntime_genai as og

    try:
        tok = og.Tokenizer(model)
        text = tok.apply_chat_template(json.dumps(messages(settings, prompt)),
                                       add_generation_prompt=True)
        config = json.loads((bundle / "genai_config.json").read_text(encoding="utf-8"))
        eos = config["model"]["eos_token_id"]
        return tok, list(tok.encode(text)), set(eos) if isinstance(eos, list) else {int(eos)}
    except Exception as exc:  # the runtime's RuntimeError, or the JSON's own errors
        raise BundleError(f"cannot read the tokenizer files in {bundle}: {_one_line(exc)}") from None


def answer_onnx(bundle: Path, settings: dict[str, Any], prompt: str, max_tokens: int) -> str:
    """Greedy generation with onnxruntime-genai (the folder's own tokenizer and chat template)."""
    import numpy as np
    import onnxruntime_genai as og

    model = open_onnx(bundle, int(settings.get("threads", 2)))
    tok, ids, eos = _onnx_text_side(bundle, model, settings, prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray([ids], dtype=np.int32))
    out: list[int] = []
    while not gen.is_done() and len(out) < max_tokens:
        gen.generate_next_token()
        token = int(gen.get_next_tokens()[0])
        if token in eos:
            break
        out.append(token)
    return str(tok.decode(np.asarray(out, dtype=np.int32))).strip()


def openvino_config(threads: int, precision: str = "f32") -> dict[str, Any]:
    """OpenVINO CPU properties: `threads` threads, and f32 inference by default — the CPU
    plugin would otherwise run bf16 on CPUs with AVX-512-BF16/AMX only, so answers would differ
    by machine from what the bench measured ("inference_precision" in generation.json)."""
    return {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}


def open_openvino(folder: Path, threads: int, precision: str = "f32") -> Any:
    """openvino-genai's LLMPipeline on the folder (CPU); a damaged folder is a BundleError."""
    import openvino_genai as ov_genai

    try:
        return ov_genai.LLMPipeline(str(folder), "CPU", **openvino_config(threads, precision))
    except Exception as exc:  # openvino raises plain RuntimeError with a C++ trace
        raise BundleError(f"cannot load {folder}: {_one_line(exc)}") from None


def answer_openvino(bundle: Path, settings: dict[str, Any], prompt: str, max_tokens: int) -> str:
    """Greedy generation with openvino-genai (the folder's converted tokenizer and its chat
    template, applied here to the trained messages)."""
    import openvino_genai as ov_genai

    pipe = open_openvino(bundle, int(settings.get("threads", 2)),
                         str(settings.get("inference_precision", "f32")))
    try:
        text = pipe.get_tokenizer().apply_chat_template(
            ov_genai.ChatHistory(messages(settings, prompt)), add_generation_prompt=True)
        config = ov_genai.GenerationConfig(max_new_tokens=max_tokens, do_sample=False,
                                           apply_chat_template=False)
        return str(pipe.generate(text, config)).strip()
    except Exception as exc:
        raise BundleError(f"cannot answer with {bundle}: {_one_line(exc)}") from None


def answer(bundle: Path | str, prompt: str, max_tokens: int | None = None) -> str:
    """The bundle's answer to one prompt, with the generation defaults it ships."""
    bundle = Path(bundle)
    settings = load_settings(bundle)
    if not (bundle / settings["model"]).exists():
        raise BundleError(f"{bundle / settings['model']} is missing: the bundle is incomplete")
    limit = int(max_tokens or settings["max_tokens"])
    runner = RUNNERS.get(settings.get("runner", settings["format"]))
    if runner is None:
        raise BundleError(f"{bundle / SETTINGS_FILE}: unknown format {settings['format']!r}")
    return runner(bundle, settings, prompt, limit)


# One runner per bundle layout, named by pipeline.formats' `bundle_runner`.
RUNNERS = {"gguf": answer_gguf, "onnx": answer_onnx, "openvino": answer_openvino}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: python {sys.argv[0]} \"your prompt\"", file=sys.stderr)
        sys.exit(2)
    try:
        print(answer(Path(__file__).resolve().parent, sys.argv[1]))
    except BundleError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
