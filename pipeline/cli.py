"""The `distill-edge` command line.

Bad input (config, target, data, model file, flags) gets one line on stderr and exit
code 2, never a traceback. Heavy libraries are imported by the stages that need them,
so a fully cached rebuild takes seconds.

Example:
    distill-edge build --target cpu-int4
    distill-edge build --config my.toml --target cpu-int8 --train-data prompts.jsonl
    distill-edge targets list
    distill-edge report build/cpu-int4
    distill-edge compare build/cpu-int4 build/cpu-int8
    distill-edge run build/cpu-int4/bundle "Ann Lee wants 2 lamps in Oslo on 2025-03-04"
    distill-edge cache verify        # every cached output against its sha256
    distill-edge cache gc --dry-run  # what no published target uses, and its size

Exit codes: 0 ok, 2 bad input, 3 not shipped: the build's decision refused the artifact (the
report still written), 1 `cache verify` found damaged entries or the machine refused a write
(full disk, read-only folder), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.errors import (
    EXIT_ENVIRONMENT,
    EXIT_NO_SHIP,
    EXIT_USER_ERROR,
    NotShipped,
    StepUnfinished,
    UserError,
    write_refused,
)
from pipeline.outputs import REPORT, OutputError, read_report

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Distill a teacher into a small student and ship it per hardware target.")
targets_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hardware profiles.")
app.add_typer(targets_app, name="targets")
cache_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="The build cache: check it, free space.")
app.add_typer(cache_app, name="cache")
BuildDir = Annotated[Path, typer.Option("--build-dir", help="The build folder (holds cache/).")]


@app.command()
def build(
    target: Annotated[str, typer.Option(help="hardware profile name (see `targets list`)")] = "cpu-int4",
    config: Annotated[Optional[Path], typer.Option(help="build config TOML (default: embedded)")] = None,
    build_dir: Annotated[Path, typer.Option(help="where cache and outputs go")] = Path("build"),
    train_data: Annotated[Optional[Path], typer.Option(
        help="train prompts: JSONL / CSV / Parquet / datasets folder "
             "(columns: see the config's \\[task])")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(
        help="eval prompts, same formats; without references the teacher labels them")] = None,
    until: Annotated[Optional[str], typer.Option(help="stop after this step (e.g. teacher)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="go on past a teacher-first check clearly below the [goal] bar")] = False,
    allow_teacher_failures: Annotated[Optional[int], typer.Option(
        min=0, help="teacher requests that may fail for good without stopping the build")] = None,
    seeds: Annotated[Optional[int], typer.Option(
        min=1, max=9, help="train this many students (seeds) and ship the median one "
                           "(default: the config's distill.seeds)")] = None,
) -> None:
    """Run the whole pipeline for one target (cached stages are reused)."""
    from pipeline.config import load_config
    from pipeline.runner import run_plan
    from pipeline.targets import load_target

    overrides: dict[str, Any] = {}
    if train_data:
        overrides["task.train_data"] = str(train_data)
    if eval_data:
        overrides["task.eval_data"] = str(eval_data)
    if seeds:
        overrides["distill.seeds"] = seeds
    if allow_teacher_failures is not None:
        overrides["teacher.allow_failures"] = allow_teacher_failures
    tgt = load_target(target)
    cfg = load_config(config, overrides)
    manifest = run_plan(cfg, tgt, build_dir, until=until, force=force)
    if until:
        last = manifest["steps"][-1]
        typer.echo(f"stopped after {until}: {last['path']}")
        return
    hits = sum(step["cache_hit"] for step in manifest["steps"])
    out = build_dir / tgt.name
    typer.echo(f"built {out} ({hits}/{len(manifest['steps'])} stages from cache): "
               f"{out / 'report.md'}")
    report = read_report(out)
    typer.echo(report.verdict.text)
    decision = report.decision  # the one decision: verdict, bundle and exit code read it
    if decision.outcome == "undecided" and decision.ship:
        print(f"distill-edge: {decision.sentence}", file=sys.stderr)
    if not decision.ship:  # the report is written; the build still fails, naming the check
        print(f"distill-edge: {decision.sentence}", file=sys.stderr)
        raise typer.Exit(decision.exit_code)


def _load_report(build_dir: Path) -> dict[str, Any]:
    """A build folder's report.json as written; missing, damaged or from another version:
    one line saying what to do."""
    if not (build_dir / REPORT).is_file():
        raise UserError(f"no {REPORT} in {build_dir}: give a build/<target> folder")
    try:
        report: dict[str, Any] = read_report(build_dir).model_dump(by_alias=True)
    except OutputError as exc:
        raise UserError(f"{exc}; or rebuild the target to write it again") from None
    return report


@contextmanager
def _complete_report(*build_dirs: Path) -> Iterator[None]:
    """Rendering a report.json with missing or mistyped fields: one line naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        names = " or ".join(str(d / REPORT) for d in build_dirs)
        raise UserError(f"{names} is not a complete distill-edge report ({type(exc).__name__}: "
                        f"{exc}): rebuild the target to write it again") from None


@app.command()
def report(build_dir: Path) -> None:
    """Re-render report.md and report.html of BUILD_DIR from its report.json."""
    from pipeline.report.render import render_html, render_markdown

    data = _load_report(build_dir)
    with _complete_report(build_dir):
        markdown, html = render_markdown(data), render_html(data)
    (build_dir / "report.md").write_text(markdown)
    (build_dir / "report.html").write_text(html)
    typer.echo(f"wrote {build_dir / 'report.md'} and {build_dir / 'report.html'}")


@app.command()
def compare(a: Path, b: Path) -> None:
    """Diff two builds' reports: metric, speed and size per artifact."""
    from pipeline.report.compare import compare_reports

    ra, rb = _load_report(a), _load_report(b)
    with _complete_report(a, b):
        typer.echo(compare_reports(ra, rb, str(a), str(b)))


@app.command()
def run(
    bundle: Annotated[Path, typer.Argument(help="a build/<target>/bundle folder")],
    prompt: Annotated[str, typer.Argument(help="the task prompt to answer")],
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="default: the bundle's")] = None,
) -> None:
    """Answer PROMPT with a bundle, as its own run.py would (greedy, trained prompt format)."""
    from pipeline.runkit.run import BundleError, answer

    try:
        typer.echo(answer(bundle, prompt, max_tokens))
    except BundleError as exc:
        raise UserError(str(exc)) from None


@app.command()
def serve(
    bundle: Annotated[Path, typer.Argument(help="a build/<target>/bundle folder (GGUF)")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
) -> None:
    """Serve BUNDLE as an OpenAI-compatible chat endpoint (llama-cpp-python's server); clients
    send just the task text, the bundle's trained prompt format is applied for them."""
    from pipeline.runkit.run import BundleError
    from pipeline.serve import serve as run_server

    try:
        run_server(bundle, host=host, port=port)
    except BundleError as exc:
        raise UserError(str(exc)) from None


@targets_app.command("list")
def targets_list() -> None:
    """List the hardware profiles."""
    from pipeline.targets import list_targets, load_target

    names = list_targets()
    width = max((len(n) for n in names), default=0)
    for name in names:
        typer.echo(f"{name:{width}s}  {load_target(name).description}")


@targets_app.command("show")
def targets_show(name: str) -> None:
    """Print one profile's settings as JSON."""
    from pipeline.targets import load_target

    typer.echo(json.dumps(load_target(name).model_dump(), indent=2))


def _cache_root(build_dir: Path) -> Path:
    root = build_dir / "cache"
    if not root.is_dir():
        raise UserError(f"no cache at {root}: give the --build-dir a build used")
    return root


@cache_app.command("verify")
def cache_verify(build_dir: BuildDir = Path("build")) -> None:
    """Check every cached output's files against the sha256 recorded when it was committed."""
    from pipeline.cache import verify_cache

    root = _cache_root(build_dir)
    intact, damaged, unfinished = verify_cache(root)
    for entry, why in damaged:
        typer.echo(f"DAMAGED  {entry.relative_to(root)}: {why}")
    for entry in unfinished:
        typer.echo(f"partial  {entry.relative_to(root)}: an interrupted run (resumed or redone "
                   "by the next build, never published)")
    typer.echo(f"{intact} intact, {len(damaged)} damaged, {len(unfinished)} unfinished")
    if damaged:
        raise typer.Exit(1)


@cache_app.command("gc")
def cache_gc(build_dir: BuildDir = Path("build"),
             dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list.")] = False,
             partials: Annotated[bool, typer.Option(
                 "--partials", help="Also remove interrupted runs (resumable work).")] = False) -> None:
    """Remove cached outputs that no published target (build/<target>/manifest.json) uses."""
    import shutil

    from pipeline.cache import build_lock, unreferenced_entries

    _cache_root(build_dir)
    with build_lock(build_dir):  # never under a running build
        garbage = unreferenced_entries(build_dir, partials=partials)
        for entry, size in garbage:
            typer.echo(f"{'would remove' if dry_run else 'removed'} {entry.relative_to(build_dir)} "
                       f"({size / 1e6:.1f} MB)")
            if not dry_run:
                shutil.rmtree(entry)
    freed = sum(size for _, size in garbage) / 1e6
    typer.echo(f"{len(garbage)} entries, {freed:.1f} MB {'to free' if dry_run else 'freed'}")


def main() -> None:
    """Console-script entry: bad input -> one line on stderr, exit 2."""
    try:
        result = app(standalone_mode=False)
    except UserError as exc:
        _fail(str(exc))
    except StepUnfinished as exc:  # not the input's fault: one line, exit 1, resumable
        _fail(str(exc), EXIT_ENVIRONMENT)
    except NotShipped as exc:  # a decision, not an error: one line, exit 3
        print(f"distill-edge: {exc}", file=sys.stderr)
        sys.exit(EXIT_NO_SHIP)
    except typer.Exit as exc:  # --help and friends
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:  # a full disk or a read-only folder: one line; other errors are bugs
        if (line := write_refused(exc)) is None:
            raise
        _fail(line, EXIT_ENVIRONMENT)
    except typer.TyperException as exc:  # bad flags: typer's vendored click usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # no arguments: the help was printed, exit 2 as click does
            sys.exit(EXIT_USER_ERROR)
        _fail(message)
    if result == 130:  # typer turns Ctrl-C into a silent exit 130: say what happened
        _fail("interrupted", 130)
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    print(f"distill-edge: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
