"""The runner: orders the stages for a target, owns cache keys, the manifest and commits.

The plan below is data: each step names a registered stage, where its inputs come from
(another step's output, or an external input prefixed with '@'), and which of its files
are published into `build/<target>/`. Each step's key chains the content digests of its
inputs, so a change anywhere upstream re-runs exactly what it changes downstream.
Distillation is keyed without the target, so `cpu-int8` after `cpu-int4` reuses teacher, filter and distill.

Example:
    >>> from pipeline.runner import PLAN
    >>> [s.id for s in PLAN][:4]
    ['prompts', 'teacher_check', 'teacher', 'eval_set']
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cache import (
    META_FILE,
    PARTIAL,
    RUNS,
    build_lock,
    changed_content,
    changed_on_disk,
    commit_dir,
    describe_files,
    file_sha256,
    library_versions,
    link_or_copy,
    read_meta,
    stage_key,
    write_json_atomic,
)
from pipeline.codehash import stage_code
from pipeline.config import BuildConfig
from pipeline.errors import NotShipped, UserError
from pipeline.generation.remote_identity import remote_teacher
from pipeline.measure.roles import Role
from pipeline.measure.seeds import seed_table
from pipeline.models.weights import path_digest, resolve_model
from pipeline.outputs import REPORT, TEACHER_CHECK, TeacherCheck, read_doc
from pipeline.stage import Runtime, Settings, StageContext, log, measured_files
from pipeline.stages import REGISTRY
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.inputs import load_rows

EXPORT = "<export>"  # the target format's export stage (pipeline.formats)
GATE_LIMITS = ("min_quality", "max_quant_loss", "max_kl", "min_greedy_agreement")  # a target's checks


@dataclass(frozen=True)
class Step:
    id: str
    stage: str  # a registered stage name, or EXPORT
    inputs: dict[str, str]  # role -> step id, or "@name" of an external input
    publish: tuple[str, ...] = ()  # file or folder names ("{artifact}": the target's export)

    def stage_for(self, target: Target) -> str:
        return target.fmt.export_stage if self.stage == EXPORT else self.stage


PLAN: tuple[Step, ...] = (
    # the user's data files -> train and eval prompts (held out, de-overlapped, validated)
    Step("prompts", "prompts", {"train_data": "@train_data", "eval_data": "@eval_data"}),
    # with a bar of the user's own: the teacher answers a sample of the labelled eval prompts
    # first; clearly below the bar, the build stops here (exit 3) unless --force
    Step("teacher_check", "teacher_check", {"teacher_model": "@teacher_model", "prompts": "prompts"}),
    # the teacher answers the train prompts and the eval prompts that have no reference
    Step("teacher", "teacher", {"teacher_model": "@teacher_model", "prompts": "prompts"}),
    # the eval prompts with references: the data's, else the teacher's answers
    Step("eval_set", "eval_set", {"prompts": "prompts", "teacher": "teacher"}),
    Step("filter", "filter", {"teacher": "teacher"}),
    # the user's labelled train rows, if any, as training data (the fine-tuned-on-labels row)
    Step("labels", "labels", {"prompts": "prompts"}),
    Step("student_base", "student_base", {"student_model": "@student_model"}),
    # sequence vs logit KD, and the teacher's cached top-k per reply token when logits
    Step("teacher_logits", "teacher_logits", {"teacher_model": "@teacher_model",
                                              "base": "student_base", "data": "filter",
                                              "eval": "eval_set"}),
    Step("distill", "distill", {"base": "student_base", "data": "filter",
                                "eval": "eval_set", "teacher_logits": "teacher_logits",
                                "teacher_model": "@teacher_model"}),
    # the same student and recipe on the user's labels alone (a no-op without them)
    Step("distill_labels", "distill", {"base": "student_base", "data": "labels",
                                       "eval": "eval_set", "teacher_logits": "labels",
                                       "teacher_model": "@teacher_model"}),
    # "calibration": the task's kept teacher rows, for profiles that quantize data-aware
    Step("export_base", EXPORT, {"model": "student_base", "calibration": "filter"}),
    Step("export", EXPORT, {"model": "distill", "calibration": "filter"},
         publish=("{artifact}", "prompt_format.json")),
    Step("bench_teacher", "bench_teacher", {"teacher_model": "@teacher_model",
                                            "eval": "eval_set"}),
    Step("bench_student", "bench_student", {"student": "distill", "eval": "eval_set"}),
    Step("bench_labels", "bench_labels", {"student": "distill_labels", "eval": "eval_set"}),
    Step("bench", "bench", {"base_export": "export_base", "student_export": "export",
                            "student": "distill", "student_bench": "bench_student",
                            "bench_teacher": "bench_teacher", "eval": "eval_set"}),
    # the shipped artifact timed on the build's [device] over ssh (else a no-op)
    Step("bench_device", "bench_device", {"export": "export", "distill": "distill",
                                          "eval": "eval_set", "bench": "bench"}),
    # the teacher judges each row's answers against its own ([task] judge; else a no-op)
    Step("judge", "judge", {"teacher_model": "@teacher_model", "eval": "eval_set",
                            "bench_teacher": "bench_teacher", "bench_student": "bench_student",
                            "bench_labels": "bench_labels", "bench": "bench"}),
    # "seed_runs": every seed's score when [distill] seeds > 1 (written by the runner)
    Step("report", "report", {"seed_runs": "@seed_runs",
                              "teacher": "teacher", "filter": "filter", "distill": "distill",
                              "export": "export", "bench_teacher": "bench_teacher",
                              "bench_student": "bench_student", "bench_labels": "bench_labels",
                              "bench": "bench",
                              "judge": "judge", "device": "bench_device", "prompts": "prompts",
                              "eval": "eval_set"},
         publish=("report.md", REPORT, "report.html")),
    Step("bundle", "bundle", {"export": "export", "distill": "distill", "report": "report"},
         publish=("bundle",)),
)


def output_digest(meta: dict[str, Any]) -> str:
    """sha256 over a committed output's file names and contents (from its metadata), less the
    files that only record how the run went (the stage's `measurements`)."""
    skip = set(meta.get("measurements", []))
    listing = "".join(f"{f['path']}:{f['sha256']};" for f in meta.get("files", [])
                      if f["path"] not in skip)
    return hashlib.sha256(listing.encode()).hexdigest()


def resolve_externals(config: BuildConfig, cache_root: Path) -> dict[str, tuple[Path | None, str]]:
    """Validate and locate every external input before anything is built: (path, digest)."""
    models = cache_root / "models"
    t = config.teacher
    teacher: tuple[Path | None, str]
    if t.backend == "openai":  # no local file: what the server says it serves identifies it
        digest, notes = remote_teacher(t.base_url, t.model_name or "", t.api_key_env,
                                       min(t.timeout_s, 30.0), t.pin_identity, models)
        for note in notes:
            log("teacher", note)
        teacher = (None, digest)
    else:
        teacher = resolve_model(t.model, t.path, models)
        if t.backend == "llama_cpp" and teacher[0] is not None and teacher[0].is_dir():
            raise UserError("teacher.path must be a GGUF file for backend = 'llama_cpp' "
                            "(use backend = 'transformers' for a Hugging Face folder)")
        if t.backend == "transformers" and teacher[0] is not None and not teacher[0].is_dir():
            raise UserError("backend = 'transformers' needs teacher.path to be a Hugging Face folder")
    student = resolve_model(config.student.model, config.student.path, models)
    # "none": no file (eval data held out of the train file; one seed)
    data: dict[str, tuple[Path | None, str]] = {"eval_data": (None, "none"),
                                                "seed_runs": (None, "none")}
    for role, given in (("train_data", config.task.train_data), ("eval_data", config.task.eval_data)):
        if given is None:
            continue
        path = Path(given)
        # every row read and checked now: a bad file is one line before anything is built
        load_rows(path, role.replace("_", " "), make_task(config.task.spec), config.task.columns)
        data[role] = (path, path_digest(path, models))
    return {"teacher_model": teacher, "student_model": student, **data}


def past_wall_s(cache_root: Path, stage_name: str) -> float | None:
    """The wall time of the newest earlier run of a stage (any key), from the cache's metadata."""
    metas = sorted((cache_root / stage_name).glob(f"*/{META_FILE}"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for meta_file in metas:
        meta = read_meta(meta_file.parent)
        if meta and isinstance(meta.get("wall_s"), int | float):
            return float(meta["wall_s"])
    return None


def progress_line(index: int, steps: list[str], history: dict[str, float | None]) -> str:
    """'step i/N id: running — ETA ...' from earlier runs' wall times of this and later steps
    (later steps may still turn out cached: the ETA is an upper estimate)."""
    rest = [history.get(s) for s in steps[index:]]
    known = [w for w in rest if w is not None]
    if not known:
        eta = "no earlier runs to estimate from"
    else:
        eta = (f"ETA ≤ {_minutes(sum(known))} for this and the {len(rest) - 1} later step(s)"
               + (f", {len(rest) - len(known)} never run before" if len(known) < len(rest) else ""))
    this = history.get(steps[index])
    return (f"step {index + 1}/{len(steps)} {steps[index]}: running"
            + (f" (last run took {_minutes(this)})" if this is not None else "") + f"; {eta}")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _run_step(stage: Any, step: Step, settings: Settings, inputs: dict[str, Path],
              key: str, final: Path, input_keys: dict[str, str], runtime: Runtime,
              code: str) -> None:
    """Run one stage into `<key>.partial`, write its metadata, then rename it into place."""
    partial = final.with_name(final.name + PARTIAL)
    if partial.exists() and not stage.resumable:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(name=step.id, settings=settings, inputs=inputs, out_dir=partial,
                       runtime=runtime)
    start = time.perf_counter()
    try:
        summary = stage.run(ctx).model_dump(mode="json", exclude_none=True)
        meta = {"stage": stage.name, "step": step.id, "code": code, "key": key,
                "settings": settings.key_dict(), "inputs": input_keys,
                "libraries": library_versions(stage.libraries),
                "wall_s": round(time.perf_counter() - start, 2), "summary": summary,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": describe_files(partial),
                "measurements": measured_files(stage)}
        write_json_atomic(partial / META_FILE, meta)  # a full disk fails here at the latest
    except BaseException:
        if not stage.resumable:  # nothing half-written is left behind
            shutil.rmtree(partial, ignore_errors=True)
        raise
    commit_dir(partial, final)


def run_plan(config: BuildConfig, target: Target, root: Path, until: str | None = None,
             force: bool = False) -> dict[str, Any]:
    """Run (or reuse) every step; return the manifest. Publishes build/<target>/.

    `until` stops after that step (nothing is published: the build is not complete).
    `force` goes on past a teacher-first check that is clearly below the bar (NotShipped).
    """
    if until is not None and until not in {s.id for s in PLAN}:
        raise UserError(f"unknown step '{until}': steps are {', '.join(s.id for s in PLAN)}")
    if not config.gate.require_goal and all(getattr(target, k) is None for k in GATE_LIMITS):
        # an empty gate would ship anything: say so before an hour of work, not after
        raise UserError(f"nothing would judge this build: [gate] require_goal = false and target "
                        f"'{target.name}' sets none of {', '.join(GATE_LIMITS)}: set one of them "
                        "or require_goal = true")
    # every input checked before the build folder is touched: bad input leaves nothing behind
    externals = resolve_externals(config, root / "cache")
    with build_lock(root):  # one build per build folder at a time
        if config.distill.seeds > 1 and until is None:
            config, externals = _train_seeds(config, target, root, externals, force)
        elif config.distill.seeds > 1:
            log("build", f"--until {until}: one student (seed {config.distill.seed}), not "
                         f"{config.distill.seeds}: seeds are compared in a whole build")
        return _run_plan(config, target, root, until, externals, force)


def _with_seed(config: BuildConfig, seed: int) -> BuildConfig:
    return config.model_copy(update={"distill": config.distill.model_copy(update={"seed": seed})})


def _train_seeds(config: BuildConfig, target: Target, root: Path,
                 externals: dict[str, tuple[Path | None, str]], force: bool = False
                 ) -> tuple[BuildConfig, dict[str, tuple[Path | None, str]]]:
    """[distill] seeds > 1: the plan up to the fp32 student's bench once per seed (each chain
    cached on its own), then the config of the median seed, whose chain the build goes on
    with; the seeds' table reaches the report step as an input (under cache/runs/)."""
    d, runs = config.distill, []
    for seed in range(d.seed, d.seed + d.seeds):
        log("build", f"seed {seed}: student {seed - d.seed + 1} of {d.seeds}")
        steps = _run_plan(_with_seed(config, seed), target, root, "bench_student", externals,
                          force)["steps"]
        runs.append({"seed": seed, "value": steps[-1]["summary"]["scores"][Role.DISTILLED_TORCH]})
    table = seed_table(runs, config.task.spec.primary)
    scores = ", ".join(f"{r['seed']}: {r['value']:.3f}" for r in runs)
    log("build", f"seeds {scores}: going on with seed {table['shipped']}, the median")
    # named by its content, and that digest is the file's own sha256 (as the manifest says)
    staged = root / "cache" / RUNS / f".seeds-{os.getpid()}.json"
    staged.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(staged, table)
    digest = file_sha256(staged)
    path = staged.with_name(f"seeds-{digest[:16]}.json")
    os.replace(staged, path)
    return _with_seed(config, table["shipped"]), {**externals, "seed_runs": (path, digest)}


def _teacher_first(out: Path, config: BuildConfig, force: bool) -> None:
    """Judge the teacher-first check against the user's bar: say it, and stop the build
    (exit 3) when the teacher is clearly below it, unless forced."""
    from pipeline.stages.teacher_check import verdict

    said = verdict(read_doc(out / TEACHER_CHECK, TeacherCheck), config.goal.min_quality)
    if not said.text:
        return
    log("teacher_check", said.text + (" (--force: going on)" if force and said.outcome == "fail"
                                      else ""))
    if said.outcome == "fail" and not force:
        raise NotShipped(f"stopped before the teacher labels the train prompts: {said.text}")


def _run_plan(config: BuildConfig, target: Target, root: Path, until: str | None,
              externals: dict[str, tuple[Path | None, str]], force: bool = False) -> dict[str, Any]:
    cache_root = root / "cache"
    digests: dict[str, str] = {}  # step id -> content digest of its output
    paths: dict[str, Path] = {}
    entries = []
    plan = list(PLAN)[: [s.id for s in PLAN].index(until) + 1 if until else None]
    history: dict[str, float | None] | None = None  # read at the first step that runs
    # each stage's code digest, once per build: an edit made while it runs keys nothing here
    codes = {s.id: stage_code(REGISTRY[s.stage_for(target)]) for s in plan}
    for index, step in enumerate(plan):
        stage = REGISTRY[step.stage_for(target)]
        settings = stage.settings(config, target)
        input_keys, inputs = {}, {}
        for role, ref in step.inputs.items():
            if ref.startswith("@"):
                path, input_keys[role] = externals[ref[1:]]
                if path is not None:  # a remote teacher, absent eval data: a digest, no file
                    inputs[role] = path
            else:
                inputs[role], input_keys[role] = paths[ref], digests[ref]
        key = stage_key(stage.name, codes[step.id], settings.key_dict(), input_keys, stage.libraries)
        final = cache_root / stage.name / key
        start = time.perf_counter()
        meta = read_meta(final)
        # stat checks on every hit; the full sha256 too for what gets published
        published = tuple(p.format(artifact=target.artifact()) for p in step.publish)
        if meta is not None and (why := changed_on_disk(final, meta) or (
                published and changed_content(final, meta, published))):
            log(step.id, f"cached output {key[:12]} changed on disk ({why}): running it again")
            shutil.rmtree(final)
            meta = None
        hit = meta is not None
        if hit:
            log(step.id, f"step {index + 1}/{len(plan)}: cache hit {key[:12]}")
        else:
            if history is None:
                history = {s.id: past_wall_s(cache_root, s.stage_for(target)) for s in plan}
            log("build", progress_line(index, [s.id for s in plan], history))
            log(step.id, f"running (key {key[:12]})")
            _run_step(stage, step, settings, inputs, key, final, input_keys,
                      stage.runtime(config, target), codes[step.id])
        meta = read_meta(final) or {}
        # Downstream keys chain the *content* of this output, not its key: a stage that
        # re-runs but writes identical files (a task-code bump that changes nothing here)
        # does not force hours of retraining downstream.
        digests[step.id], paths[step.id] = output_digest(meta), final
        entries.append({"step": step.id, "stage": stage.name, "code": codes[step.id],
                        "key": key, "output_digest": digests[step.id], "cache_hit": hit,
                        "wall_s": round(time.perf_counter() - start, 2),
                        "computed_wall_s": meta.get("wall_s"), "path": str(final),
                        "files": meta.get("files", []), "summary": meta.get("summary")})
        if step.stage == "teacher_check":
            _teacher_first(final, config, force)
        if step.id == until:
            return {"target": target.model_dump(), "until": until, "steps": entries}
    manifest = {"target": target.model_dump(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "externals": {k: {"path": str(p) if p else None, "sha256": d}
                              for k, (p, d) in externals.items()},
                "steps": entries}
    publish(root / target.name, paths, target, manifest,
            config=config.model_dump(mode="json", exclude_none=True))
    return manifest


def publish(out_dir: Path, paths: dict[str, Path], target: Target, manifest: dict[str, Any],
            config: dict[str, Any] | None = None) -> None:
    """Copy published files + manifest (+ the effective config) into out_dir via a temp dir
    and renames."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for step in PLAN:
            for pattern in step.publish:
                src = paths[step.id] / pattern.format(artifact=target.artifact())
                if src.is_dir():
                    shutil.copytree(src, tmp / src.name, copy_function=link_or_copy)
                elif src.is_file():
                    link_or_copy(src, tmp / src.name)
        write_json_atomic(tmp / "manifest.json", manifest)
        if config is not None:  # what this build ran with: the default merged with the user's
            write_json_atomic(tmp / "config.json", config)
    except BaseException:  # a full disk mid-copy: the old outputs stay, no half folder beside
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
