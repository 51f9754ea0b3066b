"""Report stage: gather the numbers of every stage into report.json and report.md.

Reads only its inputs (stage output folders and their `_meta.json`), never reruns work.

Example:
    distill-edge build --target cpu-int4
    cat build/cpu-int4/report.md
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.cache import library_versions, read_meta
from pipeline.config import BuildConfig
from pipeline.stage import StageContext
from pipeline.targets import Target

REPORT_LIBRARIES = ("torch", "transformers", "llama-cpp-python", "gguf", "tokenizers")


class ReportStage:
    name = "report"
    version = "1"
    libraries = REPORT_LIBRARIES
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {"target": target.name}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from benchmarks.report import environment, render_markdown

        walls = {}
        for role, folder in ctx.inputs.items():
            meta = read_meta(folder) if folder.is_dir() else None
            if meta:
                walls[role] = meta["wall_s"]
        report = {
            "target": ctx.settings["target"],
            "bench": json.loads((ctx.inputs["bench"] / "bench.json").read_text()),
            "data": json.loads((ctx.inputs["filter"] / "drops.json").read_text()),
            "training": (read_meta(ctx.inputs["distill"]) or {}).get("summary"),
            "teacher": json.loads((ctx.inputs["teacher"] / "stats.json").read_text()),
            "stage_wall_s": walls,
            "environment": environment(),
            "libraries": library_versions(REPORT_LIBRARIES),
        }
        (ctx.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (ctx.out_dir / "report.md").write_text(render_markdown(report))
        return {"rows": len(report["bench"]["rows"])}
