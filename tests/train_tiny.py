"""Train the tiny test model a few steps, as its own process: for the kill -9/resume test and
the 2-process accelerate test.

Example:
    python tests/train_tiny.py MODEL_DIR OUT_DIR --kill-at 5
    accelerate launch --cpu --num_processes 2 tests/train_tiny.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = "Extract the order as JSON."
SETTINGS = {"seed": 0, "batch_size": 4, "epochs": 3, "learning_rate": 1e-2, "weight_decay": 0.0,
            "warmup_ratio": 0.0, "bf16": False, "checkpoint_every": 2, "eval_every": 3}


def examples(tok: object, n: int) -> list[tuple[list[int], list[int]]]:
    from pipeline.prompts import ChatPrompt
    from pipeline.training.sft_data import encode_example

    return [encode_example(tok, ChatPrompt(system=SYSTEM), f"order {i}: {i + 1} lamps to Oslo",
                           f'{{"item":"lamps","quantity":{i + 1},"city":"Oslo"}}') for i in range(n)]


def main() -> None:
    import torch
    from accelerate import PartialState
    from safetensors.torch import save_file

    from pipeline.models.hf import load_causal_lm, load_tokenizer
    from pipeline.training.trainer import TrainSettings, train

    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kill-at", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tok, model = load_tokenizer(args.model), load_causal_lm(args.model)
    data = examples(tok, 10)

    def on_step(step: int) -> None:
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a real kill -9

    args.out.mkdir(parents=True, exist_ok=True)
    trained, summary = train(model, data, TrainSettings(**SETTINGS), tok.pad_token_id, args.out, data[:2],
                             on_step=on_step)
    state = PartialState()
    weights = {n: p.detach().contiguous() for n, p in trained.named_parameters()}
    save_file(weights, args.out / f"weights-rank{state.process_index}.safetensors")
    if state.is_main_process:
        (args.out / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
