"""The `json` kind: the answer is one JSON object whose contract is a JSON Schema.

Validation is the `jsonschema` library's (required keys, types and type unions such as
["string", "null"], enums, patterns, formats such as "date", arrays, additionalProperties).
Scoring is per top-level field, normalised by the field's schema: strings ignore case,
spacing, a leading article and a plural "s"; numbers compare exactly; "date" strings as
dates; arrays as sets; null equals only null. Metrics: valid rate, field accuracy, exact
match. The training target is compact one-line JSON in the schema's key order.

Example:
    >>> from pipeline.tasks.base import TaskSpec
    >>> from pipeline.tasks.json_task import JsonTask
    >>> schema = {"type": "object", "required": ["city", "n"], "additionalProperties": False,
    ...           "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    >>> t = JsonTask(TaskSpec(name="demo", kind="json", json_schema=schema))
    >>> t.parse('{"n": 2, "city": "Oslo"}')
    ({'city': 'Oslo', 'n': 2}, None)
    >>> t.parse('{"city": "Oslo"}')
    (None, 'missing_field:n')
    >>> t.score({"city": "oslo", "n": 3}, {"city": "Oslo", "n": 2})["field_accuracy"]
    0.5
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, ClassVar

from pipeline.tasks.base import TaskSpec, extract_json, mean_scores, norm_text

# jsonschema's failing keyword -> the drop reason the data card counts
REASONS = {"required": "missing_field", "additionalProperties": "extra_field", "type": "wrong_type",
           "enum": "not_in_enum", "const": "not_in_enum", "pattern": "pattern_mismatch",
           "format": "bad_format", "minLength": "empty_field", "minimum": "out_of_range",
           "maximum": "out_of_range", "exclusiveMinimum": "out_of_range",
           "exclusiveMaximum": "out_of_range", "minItems": "too_few_items",
           "maxItems": "too_many_items"}


def read_schema(path: Path) -> dict[str, Any]:
    """A JSON Schema file's object; ValueError names the file and the fault."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a JSON Schema must be a JSON object")
    return loaded


def check_schema(schema: Any) -> None:
    """A schema this kind can score: a valid JSON Schema of an object with properties."""
    import jsonschema

    if not isinstance(schema, dict) or schema.get("type") != "object" or not isinstance(
            schema.get("properties"), dict) or not schema["properties"]:
        raise ValueError('the schema\'s top level must be {"type": "object", "properties": {...}}')
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type", [])
    return {t} if isinstance(t, str) else set(t)


class JsonTask:
    version: ClassVar[str] = "1"
    exact_metric: ClassVar[str | None] = "exact"
    mean_metrics: ClassVar[tuple[str, ...]] = ("field_accuracy", "exact", "valid")  # per-prompt means
    metrics: ClassVar[tuple[str, ...]] = ("field_accuracy", "exact", "valid")
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("valid JSON", "valid", "{:.2f}"), ("field acc", "field_accuracy", "{:.3f}"),
        ("exact", "exact", "{:.3f}"))

    def __init__(self, spec: TaskSpec) -> None:
        import jsonschema

        self.spec = spec
        self.schema: dict[str, Any] = spec.json_schema or {}
        self.fields: tuple[str, ...] = tuple(self.schema.get("properties", {}))
        cls = jsonschema.validators.validator_for(self.schema)
        self._validator = cls(self.schema, format_checker=cls.FORMAT_CHECKER)

    def _prop(self, key: str) -> dict[str, Any]:
        return self.schema["properties"].get(key, {})

    def _coerce(self, obj: dict[str, Any]) -> dict[str, Any]:
        """2.0 for an integer field is 2: models write either; the target must be one spelling."""
        return {k: int(v) if isinstance(v, float) and v.is_integer()
                and "integer" in _types(self._prop(k)) else v for k, v in obj.items()}

    def _why(self, obj: Any) -> str | None:
        import jsonschema

        error = jsonschema.exceptions.best_match(self._validator.iter_errors(obj))
        if error is None:
            return None
        reason = REASONS.get(str(error.validator), f"schema_{error.validator}")
        field = next((str(p) for p in error.absolute_path), None)
        if error.validator == "required":
            field = next((k for k in error.validator_value if k not in error.instance), field)
        if error.validator == "additionalProperties":
            field = next((k for k in error.instance if k not in self.fields), field)
        return f"{reason}:{field}" if field else reason

    def reference(self, raw: Any) -> dict[str, Any]:
        obj = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(obj, dict):
            raise ValueError("a reference must be a JSON object")
        obj = self._coerce(obj)
        if why := self._why(obj):
            raise ValueError(f"the reference does not match the schema ({why})")
        return obj

    def parse(self, text: str) -> tuple[dict[str, Any] | None, str | None]:
        obj, why = extract_json(text)
        if why:
            return None, why
        if not isinstance(obj, dict):
            return None, "not_an_object"
        obj = self._coerce(obj)
        if why := self._why(obj):
            return None, why
        return self._ordered(obj), None

    def _ordered(self, obj: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in self.fields if k in obj] + sorted(k for k in obj if k not in self.fields)
        return {k: obj[k] for k in keys}

    def canonical(self, answer: dict[str, Any]) -> str:
        return json.dumps(self._ordered(answer), ensure_ascii=False, separators=(",", ":"))

    def _norm(self, value: Any, prop: dict[str, Any]) -> Any:
        """A comparable form of one value under its schema."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            if prop.get("format") == "date":
                try:
                    return dt.date.fromisoformat(value).isoformat()
                except ValueError:
                    return value
            return norm_text(value)
        if isinstance(value, list):
            item = prop.get("items", {}) if isinstance(prop.get("items"), dict) else {}
            return frozenset(json.dumps(self._norm(v, item), sort_keys=True, default=sorted)
                             for v in value)
        if isinstance(value, dict):
            props = prop.get("properties", {})
            return json.dumps({k: self._norm(v, props.get(k, {})) for k, v in value.items()},
                              sort_keys=True, default=sorted)
        return value

    def score(self, pred: dict[str, Any] | None, ref: dict[str, Any]) -> dict[str, float]:
        fields = {k: 0.0 for k in self.fields}
        if pred is not None:
            for key in self.fields:
                prop = self._prop(key)
                fields[key] = float(self._norm(pred.get(key), prop) == self._norm(ref.get(key), prop))
        result = {f"field_{k}": v for k, v in fields.items()}
        result["valid"] = float(pred is not None)
        result["field_accuracy"] = sum(fields.values()) / max(len(fields), 1)
        result["exact"] = float(all(v == 1.0 for v in fields.values()))
        return result

    def evaluate(self, preds: list[Any], refs: list[Any]) -> dict[str, Any]:
        return mean_scores([self.score(p, r) for p, r in zip(preds, refs, strict=True)])

    @staticmethod
    def contract(spec: TaskSpec) -> str:
        """The output contract in words, appended to the user's instructions for a prompt."""
        schema = spec.json_schema or {}
        return ("Reply with one JSON object on one line and nothing else, matching this JSON "
                "Schema:\n" + json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
