"""Content-addressed cache keys, chained from stage to stage (Olive-style, full hash).

key = sha256(stage name, the digest of the code it runs (pipeline.codehash), the settings
it reads, its inputs' digests or upstream keys, the versions of the libraries it uses).
Full 64-hex ids: Olive's 8-hex ids collided (Olive#1936). Library versions come from
package metadata, not imports, so computing keys stays fast (a no-op rebuild must take
seconds).

Example:
    >>> from pipeline.cache import stage_key
    >>> k = stage_key("filter", "c0de", {"a": 1}, {"rows": "ab"}, ("pydantic",))
    >>> len(k)
    64
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

META_FILE = "_meta.json"


def library_versions(libraries: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the given distributions ('missing' if absent)."""
    versions = {}
    for lib in libraries:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "missing"
    return versions


def stage_key(name: str, code: str, settings: dict[str, Any], inputs: dict[str, str],
              libraries: tuple[str, ...]) -> str:
    """The full sha256 cache key of one stage run (`code`: its code digest)."""
    payload = {
        "stage": name,
        "code": code,
        "settings": settings,
        "inputs": inputs,
        "libraries": library_versions(libraries),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def artifact_bytes(path: Path) -> int:
    """Size of an artifact: a file (GGUF), or a folder's files (HF, ONNX) summed."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_files(folder: Path) -> list[dict[str, Any]]:
    """sha256 and size of every file in a committed output folder (for the manifest)."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META_FILE):
        files.append({"path": str(path.relative_to(folder)), "bytes": path.stat().st_size,
                      "sha256": file_sha256(path)})
    return files


def link_or_copy(src: Path | str, dest: Path | str) -> None:
    """Hard-link a cached file into a published place (no space), else copy it."""
    try:
        os.link(src, dest)
    except OSError:  # another filesystem
        shutil.copy2(src, dest)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file a stage wrote (blank lines skipped)."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_meta(folder: Path) -> dict[str, Any] | None:
    meta = folder / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else None


LOCK_FILE = ".lock"


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold the build folder's lock (flock: the kernel releases it when the process dies,
    even by kill -9, so a stale lock never blocks); a second build there is a UserError
    naming the holder's pid."""
    import fcntl

    from pipeline.errors import UserError

    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise UserError(f"another build (pid {holder}) is running in {root}: wait for it, "
                            "or use another --build-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def changed_on_disk(folder: Path, meta: dict[str, Any]) -> str | None:
    """Why a committed output no longer matches its metadata (a file missing, resized or
    written after the commit), or None when it is intact. Cheap (stat only): run on every hit."""
    committed = (folder / META_FILE).stat().st_mtime
    for entry in meta.get("files", []):
        path = folder / entry["path"]
        if not path.is_file():
            return f"{entry['path']} is missing"
        stat = path.stat()
        if stat.st_size != entry.get("bytes", stat.st_size):
            return f"{entry['path']} changed size ({entry['bytes']} -> {stat.st_size} bytes)"
        if stat.st_mtime > committed + 1:  # written to after the step committed it
            return f"{entry['path']} was modified after it was cached"
    return None


def commit_dir(partial: Path, final: Path) -> None:
    """Atomically move a finished stage output into place (same filesystem rename)."""
    if final.exists():  # another build committed the same key first: keep theirs
        shutil.rmtree(partial)
        return
    os.replace(partial, final)


def changed_content(folder: Path, meta: dict[str, Any], under: tuple[str, ...] = ()) -> str | None:
    """The full check: every committed file's sha256 against its metadata (only the files at
    or under the names in `under`, when given). Reads every byte: run before publishing and
    by `distill-edge cache verify`, not on every cache hit."""
    for entry in meta.get("files", []):
        name = entry["path"]
        if under and not any(name == u or name.startswith(u + "/") for u in under):
            continue
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if file_sha256(path) != entry.get("sha256"):
            return f"{name} no longer has the sha256 it was committed with"
    return None


PARTIAL = ".partial"
RUNS = "runs"  # cache/runs: what the runner itself writes (the seeds' table)
# cache/models: the resolved packaged weights and their digests
NOT_STAGES = ("models", RUNS)


def cache_entries(cache_root: Path) -> Iterator[Path]:
    """Every stage output folder in the cache, committed or left `.partial` by a killed run."""
    if not cache_root.is_dir():
        return
    for stage_dir in sorted(p for p in cache_root.iterdir() if p.is_dir()):
        if stage_dir.name not in NOT_STAGES:
            yield from sorted(p for p in stage_dir.iterdir() if p.is_dir())


def verify_cache(cache_root: Path) -> tuple[int, list[tuple[Path, str]], list[Path]]:
    """(intact count, damaged, unfinished): committed entries a build must not trust (no
    metadata, or files that differ from their committed sha256), and `.partial` folders of
    interrupted runs (never used as outputs: a resumable stage continues from one, others
    start over)."""
    intact, damaged, unfinished = 0, [], []
    for entry in cache_entries(cache_root):
        if entry.name.endswith(PARTIAL):
            unfinished.append(entry)
        elif (meta := read_meta(entry)) is None:
            damaged.append((entry, "no metadata (never used as an output)"))
        elif why := changed_on_disk(entry, meta) or changed_content(entry, meta):
            damaged.append((entry, f"{why}: the next build runs this step again"))
        else:
            intact += 1
    return intact, damaged, unfinished


def referenced_entries(build_root: Path) -> set[Path]:
    """The cache folders that some published target's manifest points at."""
    used = set()
    for manifest in build_root.glob("*/manifest.json"):
        try:
            steps = json.loads(manifest.read_text()).get("steps", [])
        except (OSError, ValueError):
            continue  # a damaged manifest protects nothing; its target rebuilds anyway
        used |= {Path(s["path"]).resolve() for s in steps if isinstance(s, dict) and s.get("path")}
    return used


def unreferenced_entries(build_root: Path, partials: bool = False) -> list[tuple[Path, int]]:
    """(entry, bytes) for every committed cache entry no published manifest in build_root
    uses; `.partial` folders only with `partials` (they hold resumable teacher rows and
    training checkpoints)."""
    used = referenced_entries(build_root)
    return [(e, artifact_bytes(e)) for e in cache_entries(build_root / "cache")
            if e.resolve() not in used and (partials or not e.name.endswith(PARTIAL))]
