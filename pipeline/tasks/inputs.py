"""Task data as users have it: JSONL, CSV, Parquet, or a Hugging Face `datasets` folder.

Every file becomes rows of `{"id", "prompt", "reference"}`: the id, prompt and reference
come from the columns the `[task]` section names (`id_field`, `prompt_field`,
`reference_field`), or the prompt from a template over several columns
(`prompt_template = "Subject: {subject}\\n\\n{body}"`). References are validated by the
task (a label from the set, an object matching the schema). A bad row is one line naming
the file, the row and the column.

Example:
    >>> import tempfile, pathlib
    >>> from pipeline.tasks import make_task
    >>> from pipeline.tasks.base import TaskSpec
    >>> from pipeline.tasks.inputs import Columns, load_rows
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = f.write_text("ticket,text,category\\n7,my card was charged twice,Billing\\n")
    >>> task = make_task(TaskSpec(name="t", kind="label", labels=("billing", "shipping")))
    >>> load_rows(f, "train data", task, Columns(id_field="ticket", prompt_field="text",
    ...                                           reference_field="category"))
    [{'id': '7', 'prompt': 'my card was charged twice', 'reference': 'billing'}]
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict

from pipeline.cache import read_jsonl
from pipeline.errors import UserError
from pipeline.tasks.base import Task

# The files a build's prompts and eval_set steps write (rows as `read_rows` returns them).
TRAIN_FILE, EVAL_FILE = "train.jsonl", "eval.jsonl"
FORMATS_HELP = "JSONL (.jsonl), CSV (.csv), Parquet (.parquet) or a datasets save_to_disk folder"


class Columns(BaseModel):
    """Which columns hold a row's id, prompt and reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_field: str = "id"
    prompt_field: str = "prompt"
    reference_field: str = "reference"
    prompt_template: str | None = None  # built from several columns instead of prompt_field
    set_field: str | None = None  # eval data: the column naming each row's eval set


def normalized_prompt(text: str) -> str:
    """A prompt's identity for dedupe and the train/eval overlap: case, punctuation and
    spacing do not count."""
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {lineno}: not valid JSON") from None


def _csv(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            for row in reader:
                # a cell left empty is a missing value, not an empty string
                yield f"line {reader.line_num}", {k: (v if v != "" else None) for k, v in row.items()}
        except csv.Error as exc:
            raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None


def _table(rows: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for index, row in enumerate(rows, start=1):
        yield f"row {index}", row


def _parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    yield from _table(rows)


def _saved_dataset(path: Path) -> Iterator[tuple[str, Any]]:
    """A folder written by `datasets.Dataset.save_to_disk` (Arrow files + JSON metadata;
    nothing is unpickled)."""
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable datasets folder ({exc})") from None
    if isinstance(data, datasets.DatasetDict):
        raise UserError(f"{path} holds several splits ({', '.join(data)}): give one split's "
                        f"folder, e.g. {path / next(iter(data))}")
    yield from _table(data.to_list())


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return _saved_dataset(path)
        raise UserError(f"{path} is a folder but not a datasets save_to_disk folder: give {FORMATS_HELP}")
    readers = {".jsonl": _jsonl, ".json": _jsonl, ".csv": _csv, ".parquet": _parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: unknown data format '{path.suffix}': give {FORMATS_HELP}")
    return reader(path)


def _prompt(record: dict[str, Any], cols: Columns) -> Any:
    if cols.prompt_template is None:
        return record.get(cols.prompt_field)
    names = [n for _, n, _, _ in string.Formatter().parse(cols.prompt_template) if n]
    # an empty cell (CSV "", null) is an empty value — a chat without a subject is normal
    # data; a column the row does not have at all is a wrong name in the template
    missing = [n for n in names if n not in record]
    if missing:
        raise ValueError(f"column '{missing[0]}' (used by task.prompt_template) is missing: "
                         f"the row has {', '.join(map(repr, record)) or 'no columns'}")
    text = cols.prompt_template.format(**{n: "" if record[n] is None else record[n] for n in names})
    if all(record[n] is None or not str(record[n]).strip() for n in names):
        raise ValueError(f"every column of task.prompt_template ({', '.join(names)}) is empty: "
                         "the row has no prompt")
    return text


class PromptRow(TypedDict):
    """One prompt as the prompts step writes it (train.jsonl / eval.jsonl)."""

    id: str
    prompt: str
    reference: Any  # the task's reference (a label, an object, a text); None: unlabelled
    set: NotRequired[str]  # the eval set it belongs to, where the data names sets


class EvalRow(PromptRow):
    """A scored eval prompt as the eval_set step writes it: always with a reference."""

    answer: str  # the reference as canonical text
    reference_source: str  # "data" | "teacher"


def _row(record: Any, index: int, task: Task, cols: Columns) -> PromptRow:
    """One validated row; ValueError names the column at fault."""
    if not isinstance(record, dict):
        raise ValueError("each row must be a JSON object")
    prompt = _prompt(record, cols)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"column '{cols.prompt_field}' needs a non-empty text prompt "
                         "(set task.prompt_field or task.prompt_template)")
    raw_id = record.get(cols.id_field)
    raw_ref = record.get(cols.reference_field)
    try:
        reference = task.reference(raw_ref) if raw_ref is not None else None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column '{cols.reference_field}': {exc}") from None
    row = PromptRow(id=str(raw_id) if raw_id is not None else f"row-{index}", prompt=prompt,
                    reference=reference)
    if cols.set_field and record.get(cols.set_field) is not None:
        row["set"] = str(record[cols.set_field])
    return row


DEFAULT_COLUMNS = Columns()


def load_rows(path: Path, what: str, task: Task, cols: Columns = DEFAULT_COLUMNS,
              need_reference: bool = False) -> list[PromptRow]:
    """Read a data file into `{"id", "prompt", "reference"}` rows (reference None where the
    row has none), validating each row; any fault is one UserError line."""
    if not path.exists():
        raise UserError(f"{what} file not found: {path}")
    rows: list[PromptRow] = []
    seen: set[str] = set()
    try:
        for index, (where, record) in enumerate(_records(path), start=1):
            try:
                row = _row(record, index, task, cols)
            except ValueError as exc:
                raise UserError(f"{what} {path}: {where}: {exc}") from None
            if row["id"] in seen:
                raise UserError(f"{what} {path}: {where}: duplicate id '{row['id']}'")
            if need_reference and row["reference"] is None:
                raise UserError(f"{what} {path}: {where}: no reference in column "
                                f"'{cols.reference_field}' (eval rows need one)")
            seen.add(row["id"])
            rows.append(row)
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    if not rows:
        raise UserError(f"{what} {path} has no rows: give {FORMATS_HELP} with one prompt per row")
    return rows


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object per line (UTF-8, not ASCII-escaped)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_rows(path: Path) -> list[PromptRow]:
    """Rows the `prompts` step wrote (already validated, one JSON object per line)."""
    return read_jsonl(path)  # type: ignore[return-value]  # written as PromptRow


def read_eval(path: Path) -> list[EvalRow]:
    """The scored eval rows the `eval_set` step wrote (EVAL_FILE in its folder)."""
    return read_jsonl(path)  # type: ignore[return-value]  # written as EvalRow


def labelled_eval(path: Path, task: Task, cols: Columns = DEFAULT_COLUMNS) -> list[EvalRow]:
    """Eval rows with references and their canonical `answer` text, as eval_set writes them
    (for scripts that bench outside a build)."""
    rows = load_rows(path, "eval data", task, cols, need_reference=True)
    return [EvalRow(**r, answer=task.canonical(r["reference"]), reference_source="data")
            for r in rows]
