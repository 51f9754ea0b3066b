"""The one `Stage` Protocol and the context a stage runs with.

A stage is one linear script (setup -> run -> cleanup) behind `run(ctx)`. It reads only
`ctx.settings` (the slice of config/target it declared, a frozen typed `Settings` model whose
`key_dict()` is part of its cache key)
and `ctx.inputs` (paths of upstream outputs and input files), writes only into
`ctx.out_dir`, and never calls another stage. The runner owns hashing, caching, the
manifest and the atomic commit of `out_dir`.

Example:
    >>> from pipeline.stage import Stage
    >>> from pipeline.stages import REGISTRY
    >>> all(isinstance(s, Stage) for s in REGISTRY.values())
    True
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar  # a TypeVar default (PEP 696) on Python 3.11

from pipeline.config import BuildConfig, TeacherConfig
from pipeline.generation.backends import BackendOptions
from pipeline.targets import Target


def log(stage: str, message: str) -> None:
    """Progress line on stderr (stdout stays free for machine-readable output)."""
    print(f"{time.strftime('%H:%M:%S')} [{stage}] {message}", file=sys.stderr, flush=True)


class Settings(BaseModel):
    """A stage's settings: frozen, closed, typed — a typo is an error at load, not a KeyError
    mid-build. The cache key hashes `key_dict()`: the fields the stage set (optional fields a
    stage leaves unset, e.g. calibration on an uncalibrated export, stay out of its key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def key_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class Runtime(BaseModel):
    """How a stage runs, not what it computes (never in the cache key): the base of a stage's
    runtime model; a stage with nothing of the kind returns `Runtime()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendRuntime(Runtime):
    """How the stages that ask the teacher (teacher_check, teacher, judge) reach it."""

    api_key_env: str | None = None  # the variable's name; the key never goes in a file
    concurrency: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    backoff_s: float | None = None
    allow_failures: int = 0  # requests that may still fail after the retries

    @classmethod
    def of(cls, teacher: TeacherConfig) -> BackendRuntime:
        """The teacher config's values of these fields (same names)."""
        return cls(**teacher.model_dump(include=set(cls.model_fields)))

    def options(self, settings: Settings) -> BackendOptions:
        """The backend's options among a stage's settings and these values."""
        return BackendOptions.pick({**settings.key_dict(), **self.model_dump()})


class Summary(BaseModel):
    """What a stage run returns for the manifest (`_meta.json` and the build manifest): a
    small typed document; each stage declares its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=Settings)
R = TypeVar("R", bound=Runtime, default=Runtime)


@dataclass(frozen=True)
class StageContext(Generic[S, R]):
    """What one stage run sees: `StageContext[XSettings]`, or `StageContext[XSettings,
    XRuntime]` for a stage that reads runtime values."""

    name: str
    settings: S
    inputs: dict[str, Path]
    out_dir: Path
    runtime: R = field(default_factory=Runtime)  # type: ignore[assignment]  # the default R

    def log(self, message: str) -> None:
        log(self.name, message)


@runtime_checkable
class Stage(Protocol):
    """A pipeline stage. Its cache key holds the digest of its code (pipeline.codehash: its
    module and every pipeline module it imports); a stage whose output depends on something
    outside Python files names it in an optional `code_salt: str`.

    A stage may also name `measurements: tuple[str, ...]`: output files that record how the
    run went (wall times, tokens/s), not what it produced. They are kept and checked like
    the rest, but left out of the output's content digest, so a re-run that writes the same
    rows or weights does not re-run everything downstream (see `measured_files`)."""

    name: str
    libraries: tuple[str, ...]  # distributions whose versions enter the cache key
    resumable: bool  # keep a crashed run's partial out_dir and let run() resume it

    def settings(self, config: BuildConfig, target: Target) -> Settings:
        """The config/target values this stage reads, as its own frozen Settings model."""
        ...

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        """Settings that change how, not what, it computes (not in the key): e.g. timeouts."""
        ...

    def run(self, ctx: StageContext[Any, Any]) -> Summary:
        """Do the work into ctx.out_dir; return its typed summary for the manifest."""
        ...


def measured_files(stage: Any) -> list[str]:
    """The stage's optional `measurements` (see Stage)."""
    return list(getattr(stage, "measurements", ()))
