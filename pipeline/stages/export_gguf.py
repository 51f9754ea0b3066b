"""Export stage: HF folder -> f16 GGUF (llama.cpp's converter) -> quantized GGUF per target.

setup: find llama.cpp's `convert_hf_to_gguf.py`, which `make setup` unpacks from the same
       llama-cpp-python sdist the runtime was built from (with that sdist's own gguf-py:
       pip's gguf is older than the converter expects).
run:   convert to f16 (keeps tokenizer + chat template), then `llama_model_quantize` to
       the target's type (byte-identical to the llama-quantize binary), then load the
       result in llama-cpp-python once to prove it opens.
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
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.stage import StageContext
from pipeline.targets import GGUF_FTYPES, Target


def converter_path() -> Path:
    """Where `make setup` put llama.cpp's HF->GGUF converter (override: DISTILL_EDGE_LLAMA_CPP)."""
    root = Path(os.environ.get("DISTILL_EDGE_LLAMA_CPP", Path(sys.prefix) / "share" / "llama.cpp"))
    script = root / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise UserError(f"llama.cpp converter not found at {script}: run `make setup`")
    return script


def convert_to_f16(hf_dir: Path, out_file: Path) -> None:
    """Run llama.cpp's converter in a child process (it is a script, not a library)."""
    cmd = [sys.executable, str(converter_path()), str(hf_dir), "--outfile", str(out_file),
           "--outtype", "f16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_file.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"convert_hf_to_gguf failed ({proc.returncode}): {last[0]}")


def quantize(src: Path, dest: Path, quant: str, threads: int) -> None:
    """llama.cpp's own quantizer through the library the runtime uses."""
    import llama_cpp

    if quant == "F16":
        shutil.copyfile(src, dest)
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_FTYPES[quant])
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), ctypes.byref(params))
    if rc != 0 or not dest.is_file():
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {rc}")


class ExportGgufStage:
    name = "export"
    version = "1"
    libraries = ("llama-cpp-python",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {"format": target.format, "quant": target.quant}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from pipeline.llm import open_gguf

        quant = ctx.settings["quant"]
        hf_dir = ctx.inputs["model"]
        f16 = ctx.out_dir / "model.F16.gguf"
        convert_to_f16(hf_dir, f16)
        out = ctx.out_dir / f"model.{quant}.gguf"
        if quant != "F16":
            quantize(f16, out, quant, threads=os.cpu_count() or 1)
        fmt = hf_dir / "prompt_format.json"
        if fmt.is_file():  # the messages the student was trained with travel with the GGUF
            shutil.copyfile(fmt, ctx.out_dir / "prompt_format.json")
        llm = open_gguf(out, n_ctx=256, threads=1)  # proves the file opens in the runtime
        n_params = llm.n_params() if hasattr(llm, "n_params") else None
        del llm
        ctx.log(f"wrote {out.name} ({out.stat().st_size / 1e6:.1f} MB)")
        return {"artifact": out.name, "quant": quant, "bytes": out.stat().st_size,
                "f16_bytes": f16.stat().st_size, "parameters": n_params}
