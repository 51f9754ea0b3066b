"""Content-addressed cache keys, chained from stage to stage (Olive-style, full hash).

key = sha256(stage name, stage code version, the settings it reads, its inputs' digests
or upstream keys, the versions of the libraries it uses). Full 64-hex ids: Olive's 8-hex
ids collided (Olive#1936). Library versions come from package metadata, not imports, so
computing keys stays fast (a no-op rebuild must take seconds).

Example:
    >>> from pipeline.cache import stage_key
    >>> k = stage_key("filter", "1", {"a": 1}, {"rows": "ab"}, ("pydantic",))
    >>> len(k)
    64
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def stage_key(name: str, version: str, settings: dict[str, Any], inputs: dict[str, str],
              libraries: tuple[str, ...]) -> str:
    """The full sha256 cache key of one stage run."""
    payload = {
        "stage": name,
        "version": version,
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


def commit_dir(partial: Path, final: Path) -> None:
    """Atomically move a finished stage output into place (same filesystem rename)."""
    if final.exists():  # another build committed the same key first: keep theirs
        shutil.rmtree(partial)
        return
    os.replace(partial, final)
