"""The config reference, generated from the typed config itself: every key of every table
of a build config and of a target file, its type, default, bounds and the comment written
beside it in `pipeline/config.py` / `pipeline/targets.py` (one source: the code).

`docs/reference.md` is this module's output; a test fails when it is out of date.

Example:
    python -m pipeline.reference > docs/reference.md
    >>> from pipeline.reference import reference
    >>> "| `distill.epochs` |" in reference()
    True
"""

from __future__ import annotations

import inspect
import io
import json
import tokenize
import types
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.config import BuildConfig
from pipeline.targets import Target

HEADER = """# Configuration reference

Generated from the typed config (`python -m pipeline.reference > docs/reference.md`; a test
fails when this page is out of date). A build config (`--config my.toml`) is merged over the
embedded default (`pipeline/default.toml`): `[task]`, `[teacher]` and `[student]` replace the
default's whole, the other tables override it key by key. Unknown or ill-typed keys are
refused with one line naming the key. A target file (`targets/<name>.toml`) holds the keys
of the last table at its top level.
"""


def _comments(cls: type) -> dict[str, str]:
    """field -> the comment written on its line, or in the comment lines just above it."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    found: dict[str, str] = {}
    above: list[str] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            trailing = i > 0 and tokens[i - 1].start[0] == tok.start[0]
            line = lines[tok.start[0] - 1].strip()
            name = line.split(":", 1)[0].strip()
            if trailing and name.isidentifier():
                found[name] = " ".join([*above, text]).strip()
                above = []
            elif not trailing:
                above.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tokens[i + 1].string == ":":
            if above and tok.string not in found:
                found[tok.string] = " ".join(above)
            above = []
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.COMMENT) and tok.start[1] == 4:
            above = []
    return found


def _type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type(a) for a in get_args(annotation))
    if origin is not None:
        inner = ", ".join("…" if a is Ellipsis else _type(a) for a in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.is_required() else "—"
    value = field.default
    if isinstance(value, BaseModel):
        return "—"
    if isinstance(value, tuple):
        value = list(value)
    return "none" if value is None else json.dumps(value, ensure_ascii=False)


def _bounds(field: Any) -> str:
    marks = {Ge: ("≥", "ge"), Gt: (">", "gt"), Le: ("≤", "le"), Lt: ("<", "lt")}
    return ", ".join(f"{mark} {getattr(item, attr)}" for item in field.metadata
                     for kind, (mark, attr) in marks.items() if isinstance(item, kind))


def _table(prefix: str, model: type[BaseModel]) -> list[str]:
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):  # a subclass's comment wins
        if cls is not BaseModel and issubclass(cls, BaseModel) and cls.__module__.startswith("pipeline"):
            comments.update(_comments(cls))
    rows = ["| key | type | default | bounds | what it does |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        text = comments.get(name, "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | "
                    f"{_bounds(field)} | {text} |")
    return rows


def table_model(annotation: Any) -> type[BaseModel]:
    """A config table's model; an optional table (`[device]`: `DeviceConfig | None`) its model."""
    models = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    assert isinstance(models[0], type) and issubclass(models[0], BaseModel), annotation
    return models[0]


def reference() -> str:
    """The reference page (Markdown)."""
    out = [HEADER]
    for name, field in BuildConfig.model_fields.items():
        model = table_model(field.annotation)  # an optional table: a line says it may be left out
        doc = model.__dict__.get("__doc__") or ""  # its own, not pydantic's inherited one
        doc = inspect.cleandoc(doc) + ("" if field.is_required() or field.default is not None
                                       else " Optional: leave the table out to skip it.")
        out += [f"## [{name}]", "", *([doc.split("\n\n")[0], ""] if doc else []),
                *_table(name, model), ""]
    out += ["## Target files (`targets/*.toml`)", "", *_table("", Target), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
