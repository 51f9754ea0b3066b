"""One training process of the distill step under a launcher (accelerate launch / torchrun).

The distill stage writes a job file (settings, inputs, output folder) and runs this module
under `[distill] launcher`; every rank trains, rank 0 writes the outputs.

Example:
    accelerate launch --multi_gpu --num_processes 2 -m pipeline.distill_job job.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.errors import UserError


def main(argv: list[str]) -> int:
    from pipeline.stages.distill import distill

    job = json.loads(Path(argv[0]).read_text())
    try:
        distill(job["settings"], {k: Path(v) for k, v in job["inputs"].items()},
                Path(job["out_dir"]), job["runtime"])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
