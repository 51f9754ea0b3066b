"""Export stage: HF folder -> f16 GGUF (llama.cpp's converter) -> quantized GGUF per target.

setup: find llama.cpp's `convert_hf_to_gguf.py`, which `make setup` unpacks from the same
       llama-cpp-python sdist the runtime was built from (with that sdist's own gguf-py:
       pip's gguf is older than the converter expects).
run:   convert to f16 (keeps tokenizer + chat template), then `llama_model_quantize` to
       the target's type (byte-identical to the llama-quantize binary) — with an importance
       matrix from the task's own kept teacher rows when the profile asks (calibration =
       "imatrix", see pipeline.models.imatrix) — then load the result in llama-cpp-python once
       to prove it opens.
Keyed only on the target fields it reads (format, quant), so profiles that agree share it.

Example:
    distill-edge build --target cpu-int8
    ls build/cache/export/*/
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.formats import FORMATS, GGUF_FTYPES
from pipeline.outputs import KEPT, ExportSummary, carry_prompt_format
from pipeline.prompts import ChatPrompt
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target

if TYPE_CHECKING:
    import numpy as np


def converter_path() -> Path:
    """Where `make setup` put llama.cpp's HF->GGUF converter (override: DISTILL_EDGE_LLAMA_CPP)."""
    root = Path(os.environ.get("DISTILL_EDGE_LLAMA_CPP", Path(sys.prefix) / "share" / "llama.cpp"))
    script = root / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise UserError(f"llama.cpp converter not found at {script}: run `make setup`")
    return script


def convert_to_f16(hf_dir: Path, out_file: Path) -> None:
    """Run llama.cpp's converter in a child process (it is a script, not a library).

    The converter names the model (general.name, general.finetune) after its folder's name;
    here that is a cache key, so the same weights would export to different bytes from
    different keys. It reads them through a link with a fixed name instead."""
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "student"
        link.symlink_to(hf_dir.resolve(), target_is_directory=True)
        cmd = [sys.executable, str(converter_path()), str(link), "--outfile", str(out_file),
               "--outtype", "f16"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_file.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"convert_hf_to_gguf failed ({proc.returncode}): {last[0]}")


def quantize(src: Path, dest: Path, quant: str, threads: int,
             imatrix: dict[str, np.ndarray] | None = None) -> None:
    """llama.cpp's own quantizer through the library the runtime uses (`imatrix`: GGUF tensor
    name -> mean squared input activation per column, as llama-imatrix writes)."""
    import llama_cpp

    from pipeline.models.imatrix import as_ctypes

    if quant == "F16":
        shutil.copyfile(src, dest)
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_FTYPES[quant])
    params.nthread = threads
    if imatrix:
        params.imatrix, _keep_alive = as_ctypes(imatrix)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), ctypes.byref(params))
    if rc != 0 or not dest.is_file():
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {rc}")


def _imatrix(ctx: StageContext[ExportGgufSettings], f16: Path) -> dict[str, np.ndarray]:
    """The importance matrix of the model on the task's own kept teacher rows (prompt and
    answer in the student's trained format), saved beside the GGUF for inspection."""
    import json

    from pipeline.models import imatrix
    from pipeline.models.hf import load_tokenizer
    from pipeline.training.sft_data import calibration_texts

    s, hf_dir = ctx.settings, ctx.inputs["model"]
    texts = calibration_texts(load_tokenizer(hf_dir), s.prompt,
                              ctx.inputs["calibration"] / KEPT, s.calibration_rows)
    stats = imatrix.for_gguf(imatrix.collect(hf_dir, texts, threads=os.cpu_count() or 1), f16)
    (ctx.out_dir / "imatrix.json").write_text(json.dumps(
        {"rows": len(texts), "tokens": sum(map(len, texts)),
         "tensors": {k: round(float(v.mean()), 6) for k, v in sorted(stats.items())}}, indent=1))
    ctx.log(f"imatrix: {len(stats)} tensors from {len(texts)} task rows")
    return stats


class ExportGgufSettings(Settings):
    """Keyed only on the target fields it reads: profiles that agree share the export."""

    format: str
    quant: str
    # calibration = "imatrix" only: the student's prompt renders the calibration rows
    calibration: str | None = None
    calibration_rows: int | None = None
    prompt: ChatPrompt | None = None
    encodings: list[str] = []  # other types written beside `quant` for the bench's search


class ExportGgufStage:
    name = "export"
    libraries = ("llama-cpp-python",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> ExportGgufSettings:
        extra = {"encodings": target.candidates()[1:]} if target.encodings else {}
        if target.calibration == "imatrix" and target.quant != "F16":
            return ExportGgufSettings(
                format=target.format, quant=target.quant, calibration="imatrix",
                calibration_rows=target.calibration_rows, prompt=config.task.student_prompt,
                **extra)
        return ExportGgufSettings(format=target.format, quant=target.quant, **extra)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[ExportGgufSettings]) -> ExportSummary:
        from pipeline.generation.llm import open_gguf
        from pipeline.measure.quant_mix import gguf_mix

        quant = ctx.settings.quant
        hf_dir = ctx.inputs["model"]
        gguf = FORMATS["gguf"]  # this stage's format: artifact names from the table
        f16 = ctx.out_dir / gguf.artifact(gguf.fp)
        convert_to_f16(hf_dir, f16)
        out = ctx.out_dir / gguf.artifact(quant)
        if quant != "F16":
            matrix = _imatrix(ctx, f16) if ctx.settings.calibration == "imatrix" else None
            for q in [quant, *ctx.settings.encodings]:  # the search's candidates: same calibration
                quantize(f16, ctx.out_dir / gguf.artifact(q), q, threads=os.cpu_count() or 1,
                         imatrix=matrix)
        carry_prompt_format(hf_dir, ctx.out_dir)
        llm = open_gguf(out, n_ctx=256, threads=1)  # proves the file opens in the runtime
        n_params = llm.n_params() if hasattr(llm, "n_params") else None
        del llm
        ctx.log(f"wrote {out.name} ({out.stat().st_size / 1e6:.1f} MB)")
        return ExportSummary(artifact=out.name, quant=quant, bytes=out.stat().st_size,
                             reference_bytes=f16.stat().st_size, parameters=n_params,
                             bits_per_weight=gguf_mix(out, quant)["bits_per_weight"])
