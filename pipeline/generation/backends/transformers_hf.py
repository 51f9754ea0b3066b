"""Teacher backend on a local Hugging Face folder with transformers (safetensors only).

Also the loading path logit-level KD will use. Greedy at temperature 0, else seeded sampling.

Example:
    python -c "from pipeline.generation.backends import BackendOptions; \
        from pipeline.generation.backends.transformers_hf import TransformersBackend; \
        b = TransformersBackend('teacher-hf/', BackendOptions(threads=2))"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.generation.backends import BackendOptions, Request, Result


class TransformersBackend:
    wave = None  # each request's answer is its own

    def __init__(self, model_path: Any, settings: BackendOptions) -> None:
        import torch

        from pipeline.models.hf import load_for_inference, load_tokenizer

        torch.set_num_threads(settings.threads)
        self.tok = load_tokenizer(Path(model_path))
        self.model, self.device = load_for_inference(Path(model_path))

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        import torch

        for req in requests:
            ids = self.tok.apply_chat_template(list(req.messages), add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True).to(self.device)
            torch.manual_seed(req.seed)
            sampling = ({"do_sample": False} if req.temperature == 0 else
                        {"do_sample": True, "temperature": req.temperature, "top_k": 40})
            with torch.no_grad():
                out = self.model.generate(**ids, max_new_tokens=req.max_tokens,
                                          pad_token_id=self.tok.pad_token_id, **sampling)
            new = out[0, ids["input_ids"].shape[1]:]
            yield Result(request=req, text=self.tok.decode(new, skip_special_tokens=True).strip(),
                         prompt_tokens=int(ids["input_ids"].shape[1]),
                         prefill_tokens=int(ids["input_ids"].shape[1]), completion_tokens=len(new))

    def close(self) -> None:
        del self.model
