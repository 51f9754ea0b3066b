"""The latency harness: sane positive numbers, the child's memory (not the parent's), one
runtime adapter per format, and scores (perplexity, KL, top-1) that mean what they say."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.measure.child import score
from pipeline.measure.latency import bench_artifact, summarize_latency
from pipeline.measure.runtimes import log_softmax
from pipeline.prompts import ChatPrompt

SYS = ChatPrompt(system="You extract orders.")
PROMPTS = ["Ann Lee wants 2 lamps", "hello"]


@pytest.fixture
def tiny_gguf(tiny_f16: Path) -> Path:
    return tiny_f16  # the shared F16 export (conftest)


def _texts(tiny_hf: Path) -> list[dict[str, Any]]:
    from pipeline.models.hf import load_tokenizer
    from pipeline.training.sft_data import IGNORE, encode_example

    tok = load_tokenizer(tiny_hf)
    out = []
    for user, reply in [("Ann Lee wants 2 lamps", '{"name":"Ann Lee"}'), ("hi", "hello there")]:
        ids, labels = encode_example(tok, SYS, user, reply)
        out.append({"tokens": ids, "start": labels.count(IGNORE)})
    return out


def test_child_process_numbers(tiny_gguf: Path) -> None:
    # Hold ~1.5 GB here: a child started from a big parent inherits ru_maxrss across
    # fork+exec, which once made every artifact report the parent's 2.7 GB.
    ballast = np.ones(1_500_000_000 // 8)
    raw = bench_artifact(tiny_gguf, SYS, PROMPTS,
                         threads=1, n_ctx=256, max_tokens=8, warmup=1,
                         synthetic={"pp": 16, "tg": 8, "repeats": 2})
    assert ballast.sum() > 0
    assert raw["runtime"] == "llama_cpp" and len(raw["results"]) == 2
    stats = summarize_latency(raw)
    assert stats["load_s"] > 0 and stats["ttft_mean_s"] > 0
    assert stats["decode_tok_s"] > 0 and stats["prefill_tok_s"] > 0
    assert 10 < stats["peak_rss_mb"] < 1000, stats
    assert stats["pp_tok_s"] > 0 and stats["tg_tok_s"] > 0 and stats["tg_bare_tok_s"] > 0
    assert stats["pp_tok_s_p90"] > 0 and -100 < stats["harness_overhead_pct"] < 100



@pytest.mark.parametrize("artifact", ["tiny_gguf", "tiny_hf"])
def test_only_the_first_prompts_are_timed_and_the_rest_answer_the_same(
        artifact: str, request: pytest.FixtureRequest) -> None:
    """latency_prompts = 1: one prompt timed alone, the others answered for quality only (on
    torch together: chat_many, transformers' generate over left-padded prompts; on llama.cpp
    one at a time) — the same greedy answers as all one at a time; latency columns from the
    timed one."""
    model = request.getfixturevalue(artifact)
    prompts = [*PROMPTS, "Lena Fischer: 4 desks to Graz by 2025-06-01", "9 cups, Oslo"]
    alone = bench_artifact(model, SYS, prompts, threads=1, n_ctx=256, max_tokens=12, warmup=0)
    mixed = bench_artifact(model, SYS, prompts, threads=1, n_ctx=256, max_tokens=12, warmup=0,
                           latency_prompts=1)
    assert [r["timed"] for r in mixed["results"]] == [True, False, False, False]
    assert [r["response"] for r in mixed["results"]] == [r["response"] for r in alone["results"]]
    assert [r["completion_tokens"] for r in mixed["results"]] == \
        [r["completion_tokens"] for r in alone["results"]]
    assert summarize_latency(mixed)["latency_prompts"] == 1
    assert summarize_latency(alone)["latency_prompts"] == 4


class _Runtime:
    """A runtime whose batches round differently from its one-at-a-time answers (like GGUF):
    records which path answered each prompt."""

    batches_exactly = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def constrain(self, grammar: str) -> None:
        pass

    @staticmethod
    def _answer(text: str) -> Any:
        from pipeline.generation.llm import Generation

        return Generation(text=text, prompt_tokens=3, prefill_tokens=3, completion_tokens=1,
                          ttft_s=0.01, decode_s=0.0, total_s=0.01)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Any:
        self.calls.append("one")
        return self._answer("one")

    def chat_many(self, chats: list[list[dict[str, str]]], max_tokens: int) -> list[Any]:
        self.calls.append(f"many:{len(chats)}")
        return [self._answer("many") for _ in chats]


@pytest.mark.parametrize(("batched", "grammar", "many"), [
    (False, None, False), (True, None, True), (True, "g", False)])
def test_inexact_batches_only_for_rows_that_ask(batched: bool, grammar: str | None, many: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime whose batched answers may differ from one-at-a-time ones (GGUF) answers the
    untimed prompts batched only for a row marked `batched` (not shipped), never under a
    grammar; the timed prompts are always one at a time."""
    from pipeline.measure import child

    rt = _Runtime()
    monkeypatch.setattr(child, "open_runtime", lambda *args: rt)
    spec = {"runtime": "fake", "model": "m", "n_ctx": 64, "threads": 1, "max_tokens": 4,
            "warmup": 0, "prompt": SYS.model_dump(mode="json"), "prompts": ["a", "b", "c"],
            "latency_prompts": 1, "grammar": grammar, "batched": batched}
    out = child.run(spec)
    assert [r["timed"] for r in out["results"]] == [True, False, False]
    assert rt.calls == (["one", "many:2"] if many else ["one"] * 3)
    assert [r["response"] for r in out["results"]] == ["one"] + ["many" if many else "one"] * 2


def _torch_reference(tiny_hf: Path, texts: list[dict[str, Any]], ref: Path,
                     synthetic: dict[str, int] | None = None) -> dict[str, Any]:
    """Bench the HF folder on torch, leaving its log-probs in `ref` for the others."""
    raw = bench_artifact(tiny_hf, SYS, PROMPTS, threads=1,
                         max_tokens=8, synthetic=synthetic,
                         score={"texts": texts, "save_reference": str(ref)})
    assert raw["runtime"] == "torch" and len(raw["results"]) == 2
    return summarize_latency(raw)


def test_torch_runtime_and_export_parity(tiny_hf: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    """The HF folder runs on torch; its F16 GGUF export, scored on the same token ids against
    the torch fp32 log-probs, is numerically the same model (tiny KL, same top-1)."""
    ref = tmp_path / "ref.npy"
    texts = _texts(tiny_hf)
    stats = _torch_reference(tiny_hf, texts, ref, synthetic={"pp": 16, "tg": 8, "repeats": 2})
    assert stats["decode_tok_s"] > 0 and stats["pp_tok_s"] > 0 and stats["tg_tok_s"] > 0
    assert "tg_bare_tok_s" not in stats  # no bare loop to compare against on torch
    n_scored = sum(len(t["tokens"]) - t["start"] for t in texts)
    assert stats["scored_tokens"] == n_scored and stats["perplexity"] > 1
    gguf = summarize_latency(bench_artifact(tiny_gguf, SYS, PROMPTS, threads=1, n_ctx=256,
        max_tokens=8, score={"texts": texts, "reference": str(ref)}))
    assert gguf["kl_vs_reference"] < 1e-3, gguf
    assert gguf["top1_agreement"] >= 0.9, gguf
    assert math.isclose(gguf["perplexity"], stats["perplexity"], rel_tol=0.01)


class _FakeRuntime:
    """Log-probs from fixed logits: a hand-made case for the scoring arithmetic."""

    n_vocab = 3

    def __init__(self, logits: list[list[float]]) -> None:
        self.rows = log_softmax(np.array(logits))

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        return self.rows[: len(tokens) - start]


def test_score_perplexity_kl_and_top1_by_hand(tmp_path: Path) -> None:
    texts = [{"tokens": [0, 1, 2], "start": 1}]  # scores tokens 1 and 2
    uniform = _FakeRuntime([[0, 0, 0], [0, 0, 0]])
    out = score(uniform, texts, save_reference=str(tmp_path / "u.npy"))  # type: ignore[arg-type]
    assert math.isclose(out["perplexity"], 3.0, rel_tol=1e-5)  # uniform over 3 tokens
    assert out["scored_tokens"] == 2
    same = score(uniform, texts, reference=str(tmp_path / "u.npy"))  # type: ignore[arg-type]
    assert abs(same["kl_vs_reference"]) < 1e-3 and same["top1_agreement"] == 1.0
    sharp = _FakeRuntime([[0, 5, 0], [5, 0, 0]])
    ref = str(tmp_path / "s.npy")
    score(sharp, texts, save_reference=ref)  # type: ignore[arg-type]
    vs_uniform = score(uniform, texts, reference=ref)  # type: ignore[arg-type]
    p = np.exp(log_softmax(np.array([0.0, 5.0, 0.0])))
    expected_kl = float((p * (np.log(p) - np.log(1 / 3))).sum())
    assert math.isclose(vs_uniform["kl_vs_reference"], expected_kl, rel_tol=1e-2)
    # uniform's argmax is token 0 on both rows; the reference's is 1, then 0
    assert vs_uniform["top1_agreement"] == 0.5


def test_onnx_runtime_matches_torch(tiny_hf: Path, tiny_onnx: Callable[[str], tuple[Path, dict]],
                                    tmp_path: Path) -> None:
    """The onnxruntime-genai builder's fp32 export of the tiny model runs through the ONNX
    adapter and is numerically the torch model (tiny KL, same perplexity)."""
    onnx_dir = tiny_onnx("int4")[0] / "onnx-fp32"  # the export stage's fp32 reference folder
    texts, ref = _texts(tiny_hf), tmp_path / "ref.npy"
    torch_row = _torch_reference(tiny_hf, texts, ref)
    raw = bench_artifact(onnx_dir, SYS, PROMPTS, threads=1,
                         max_tokens=8, synthetic={"pp": 16, "tg": 8, "repeats": 2},
                         score={"texts": texts, "reference": str(ref)})
    assert raw["runtime"] == "onnxruntime" and len(raw["results"]) == 2
    stats = summarize_latency(raw)
    assert stats["decode_tok_s"] > 0 and stats["pp_tok_s"] > 0 and stats["tg_tok_s"] > 0
    assert stats["kl_vs_reference"] < 1e-3 and stats["top1_agreement"] >= 0.9, stats
    assert math.isclose(stats["perplexity"], torch_row["perplexity"], rel_tol=0.01)


def _corrupt_copy(gguf: Path, dest: Path) -> Path:
    """A copy of the GGUF whose token embeddings (tied: also the output head) are scaled 8×,
    as a converter that mis-scales one tensor would leave them: it loads and generates."""
    import shutil

    from gguf import GGUFReader

    shutil.copyfile(gguf, dest)
    reader = GGUFReader(dest, "r+")
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    embd.data[...] = embd.data * 8
    del reader  # flushes the memory map
    return dest


def test_parity_gate_passes_a_faithful_export_and_fails_a_corrupted_one(
        tiny_hf: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    """The parity gate, on real numbers: the faithful F16 export passes, the corrupted copy
    fails with a message naming the artifact and its KL."""
    from pipeline.measure.decision import Evidence, Limits, decide_ship, quantization_checks

    texts, ref = _texts(tiny_hf), tmp_path / "ref.npy"
    reference = {"role": "distilled_torch", "label": "distilled fp32 (torch)", "field_accuracy": 1.0,
                 **_torch_reference(tiny_hf, texts, ref)}
    gates = {}
    for name, gguf in (("faithful", tiny_gguf),
                       ("corrupted", _corrupt_copy(tiny_gguf, tmp_path / "bad.gguf"))):
        stats = summarize_latency(bench_artifact(gguf, SYS, PROMPTS, threads=1, n_ctx=256,
            max_tokens=8, score={"texts": texts, "reference": str(ref)}))
        shipped = {"role": "distilled", "label": f"{name} F16", "field_accuracy": 1.0, **stats}
        none = Evidence(task=None, metric="field_accuracy", answers=[], refs=[], tiers=[])
        gates[name] = decide_ship(quantization_checks(none, Limits(max_kl=0.01), shipped, reference),
                                  strict=True)
    assert gates["faithful"]["ship"], gates["faithful"]
    bad = gates["corrupted"]
    assert not bad["ship"] and bad["checks"][0]["value"] > 0.1, bad
    assert bad["checks"][0]["text"].startswith("corrupted F16 mean next-token KL vs the fp32 student: ")
