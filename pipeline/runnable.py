"""A runnable folder: the shipped artifact with what answers with it, and nothing else.

The bundle stage writes one (and adds its model card and Modelfile); the device bench writes
one to stream to a device (`pipeline.device`). Its parts: the artifact (GGUF: the file; a
folder layout such as onnxruntime-genai's: its files at the top level, as the runtime loads
it), the student's tokenizer files and chat template, `generation.json` (system prompt and
user template the student was trained with, greedy decoding, max_tokens, context, threads),
the task grammar on a constrained target, and run.py + runkit/ (`pipeline/runkit`, copied
verbatim: they need only the folder and its runtime).

Example:
    from pipeline.runnable import Runnable, write_runnable
    gen = write_runnable(Path("out"), Runnable(format="gguf", runner="gguf", layout="file",
                         artifact="model.Q4_K_M.gguf", max_tokens=96, n_ctx=1024, threads=2,
                         execution_provider="cpu"), export=Path("export"), tokenizer=Path("hf"))
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from pipeline.cache import link_or_copy
from pipeline.codehash import module_path
from pipeline.outputs import PROMPT_FORMAT, read_json
from pipeline.runkit import run as runkit_run
from pipeline.stage import Settings

# Tokenizer files a runtime or a user may need beside the artifact (those that exist are copied).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "vocab.json", "merges.txt", "generation_config.json")
GRAMMAR_FILE = "grammar.json"  # llguidance's grammar: run.py masks every token it disallows
SCHEMA_FILE = "schema.json"  # a json task's answer schema as the grammar has it (bounded), for Ollama
# what answers in the folder: the runkit package, and its launcher written as run.py (named
# as a module, so a stage's code digest covers the launcher too: pipeline.codehash)
LAUNCHER = "pipeline.runkit.launcher"


class RunSettings(TypedDict):
    """The folder's runkit.run.SETTINGS_FILE: how run.py loads and asks the model."""

    format: str
    runner: str
    model: str  # the artifact, relative to the folder ("." for a folder layout)
    system: str
    user_template: str
    few_shot: list[Any]  # the trained prompt's worked examples (ChatPrompt.format_file)
    max_tokens: int
    temperature: float
    n_ctx: int
    threads: int
    execution_provider: str
    grammar: NotRequired[str]  # GRAMMAR_FILE, on a constrained target
    schema: NotRequired[str]  # SCHEMA_FILE, for a json task's Ollama users


class Runnable(Settings):
    """The target and format facts a runnable folder is made from (pipeline.formats')."""

    format: str
    runner: str  # runkit.run.RUNNERS key
    layout: str  # "file" or "folder"
    artifact: str
    max_tokens: int
    n_ctx: int
    threads: int
    execution_provider: str
    grammar: str = ""  # the task grammar run.py decodes under (a constrained target)


def _copy_artifact(export: Path, artifact: str, layout: str, folder: Path) -> str:
    """The artifact into the folder; returns what generation.json's `model` names."""
    src = export / artifact
    if layout == "folder":  # e.g. an onnxruntime-genai folder: its files are the top level
        for f in src.iterdir():
            link_or_copy(f, folder / f.name)
        return "."
    link_or_copy(src, folder / artifact)
    return artifact


def _copy_runkit(folder: Path) -> None:
    """run.py (the launcher) and runkit/ (its modules, without caches or the launcher)."""
    launcher = module_path(LAUNCHER)
    assert launcher is not None, LAUNCHER
    shutil.copyfile(launcher, folder / "run.py")
    shutil.copytree(launcher.parent, folder / launcher.parent.name,
                    ignore=shutil.ignore_patterns("__pycache__", launcher.name))


def write_runnable(folder: Path, s: Runnable, *, export: Path, tokenizer: Path,
                   artifact: str | None = None) -> RunSettings:
    """Write the runnable folder (created here) from an export step's folder and the
    student's HF folder (`tokenizer`); return its generation.json. `artifact`: the file that
    ships when the bench's encoding search chose another than the target's own."""
    folder.mkdir(parents=True)
    model = _copy_artifact(export, artifact or s.artifact, s.layout, folder)
    fmt = read_json(export, PROMPT_FORMAT)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file() and not (folder / name).exists():
            shutil.copyfile(tokenizer / name, folder / name)
    gen = RunSettings(format=s.format, runner=s.runner, model=model, system=fmt["system"],
                      user_template=fmt["user_template"], few_shot=fmt.get("few_shot", []),
                      max_tokens=s.max_tokens, temperature=0.0, n_ctx=s.n_ctx,
                      threads=s.threads, execution_provider=s.execution_provider)
    if s.grammar:
        (folder / GRAMMAR_FILE).write_text(s.grammar + "\n")
        gen["grammar"] = GRAMMAR_FILE
        schema = json.loads(s.grammar)["grammars"][0].get("json_schema")
        if schema is not None:
            (folder / SCHEMA_FILE).write_text(json.dumps(schema, indent=2) + "\n")
            gen["schema"] = SCHEMA_FILE
    (folder / runkit_run.SETTINGS_FILE).write_text(json.dumps(gen, indent=2) + "\n")
    _copy_runkit(folder)
    return gen


def runnable_of(target: Any, max_tokens: int, grammar: str) -> dict[str, Any]:
    """A Runnable's fields from a Target (the format's bundle facts) and the build's settings."""
    fmt = target.fmt
    return {"format": target.format, "runner": fmt.bundle_runner, "layout": fmt.bundle_layout,
            "artifact": target.artifact(), "max_tokens": max_tokens, "n_ctx": target.n_ctx,
            "threads": target.threads, "execution_provider": target.execution_provider,
            "grammar": grammar}
