"""The embedded default task: free-text order message -> one JSON object.

A task is prompts + a parser/validator + a metric. The answer is a JSON object with
exactly the keys name (str), item (str), quantity (int), city (str), date (YYYY-MM-DD).
`generate_split` writes prompts deterministically from many phrasings (emails, chat,
SMS, forms, third-person notes; several date and number styles). The eval split uses
phrasings and value pools held out from the train split, so the metric measures
generalization, not memorized templates.

Example:
    >>> from pipeline.tasks.extraction import parse_answer, score
    >>> obj, why = parse_answer('{"name":"Ann Lee","item":"desk lamps","quantity":2,'
    ...                         '"city":"Oslo","date":"2025-03-04"}')
    >>> why is None, score(obj, obj)["exact"]
    (True, 1.0)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pipeline.tasks import generator

# Bump when parsing, validation or scoring changes: it enters the filter and bench cache keys.
TASK_VERSION = "1"

KEYS: tuple[str, ...] = ("name", "item", "quantity", "city", "date")
TYPES: dict[str, type] = {"name": str, "item": str, "quantity": int, "city": str, "date": str}

STUDENT_SYSTEM_PROMPT = (
    "Extract the order as one JSON object with keys name, item, quantity, city, date "
    "(YYYY-MM-DD). Reply with the JSON only."
)

# Few-shot teacher prompt: a trial here raised the teacher's field accuracy from 0.82 to
# 0.96 with worked examples. It is long, but it is the shared prefix of every teacher
# request, so llama.cpp reuses its KV cache; the student never needs it (context
# distillation). Examples cover the teacher's known mistakes: the verb phrase or the
# count leaking into fields, a header ("To: Sales") taken as the name, digits in items.
TEACHER_SYSTEM_PROMPT = """You extract orders from messages. Reply with one JSON object on one line and nothing else, with exactly these keys:
name: the full name of the person placing the order (never a team, company or recipient)
item: the product as written, without the count (keep digits that are part of the product, like "27-inch monitors")
quantity: the number of items, as an integer
city: the delivery city
date: the delivery date as YYYY-MM-DD
Never add other keys (no ticket, reference or phone numbers).

Message: To: Sales
Hi, could you send 3 bags of cement to Leeds by March 4, 2025? Thanks, Priya Natarajan
JSON: {"name":"Priya Natarajan","item":"bags of cement","quantity":3,"city":"Leeds","date":"2025-03-04"}

Message: order for Tomás Rivera (ticket 88213) - twelve 27-inch monitors, ship to Porto, deliver 2026-11-30
JSON: {"name":"Tomás Rivera","item":"27-inch monitors","quantity":12,"city":"Porto","date":"2026-11-30"}

Message: Send 1 standing desk to our Nairobi office on the 9th of July 2024. - Wanjiru Kamau (ops team, ext. 4411)
JSON: {"name":"Wanjiru Kamau","item":"standing desk","quantity":1,"city":"Nairobi","date":"2024-07-09"}"""

TEACHER_USER_TEMPLATE = "Message: {prompt}\nJSON:"
STUDENT_USER_TEMPLATE = "{prompt}"


def _extract_object(text: str) -> tuple[Any, str | None]:
    """The first JSON value in a reply, tolerating code fences, prose and trailing text."""
    start = text.find("{")
    if start < 0:
        return None, "invalid_json"
    try:
        # raw_decode stops after the first complete value: '{...} Message: {...}' still parses.
        return json.JSONDecoder().raw_decode(text, start)[0], None
    except json.JSONDecodeError:
        return None, "invalid_json"


def parse_answer(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and validate a reply; returns (object, None) or (None, drop reason)."""
    if not text.strip():
        return None, "empty"
    obj, why = _extract_object(text)
    if why:
        return None, why
    if not isinstance(obj, dict):
        return None, "not_an_object"
    if any(k not in obj for k in KEYS):
        return None, "missing_keys"
    if set(obj) - set(KEYS):
        return None, "extra_keys"
    for key, typ in TYPES.items():
        value = obj[key]
        # bool is an int subclass in Python; JSON true is not a quantity.
        if not isinstance(value, typ) or isinstance(value, bool):
            return None, "wrong_type"
        if typ is str and not value.strip():
            return None, "empty_field"
    if not _is_iso_date(obj["date"]):
        return None, "bad_date"
    if obj["quantity"] <= 0:
        return None, "bad_quantity"
    return {k: obj[k] for k in KEYS}, None


def _is_iso_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def canonical(obj: dict[str, Any]) -> str:
    """The training target: compact one-line JSON in key order (short, easy to learn)."""
    return json.dumps({k: obj[k] for k in KEYS}, ensure_ascii=False, separators=(",", ":"))


def _norm(value: Any) -> str:
    """Lenient text compare: case, spacing, articles and a plural 's' do not count."""
    text = re.sub(r"\s+", " ", str(value).strip().lower()).strip(" .,;:!\"'")
    text = re.sub(r"^(a|an|the)\s+", "", text)
    return re.sub(r"(?<=\w)(es|s)$", "", text)


def score(pred: dict[str, Any] | None, ref: dict[str, Any]) -> dict[str, float]:
    """Per-field correctness (1/0), validity and exact match for one answer."""
    fields = {k: 0.0 for k in KEYS}
    if pred is not None:
        for key in KEYS:
            if key == "quantity":
                fields[key] = float(pred[key] == ref[key])
            else:
                fields[key] = float(_norm(pred[key]) == _norm(ref[key]))
    result = {f"field_{k}": v for k, v in fields.items()}
    result["valid"] = float(pred is not None)
    result["field_accuracy"] = sum(fields.values()) / len(KEYS)
    result["exact"] = float(all(v == 1.0 for v in fields.values()))
    return result


def aggregate(scores: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each per-answer score over a split."""
    if not scores:
        return {}
    return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}


def generate_split(split: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Deterministic prompts with references for 'train' or 'eval' (disjoint phrasings)."""
    return generator.generate(split, count, seed)
