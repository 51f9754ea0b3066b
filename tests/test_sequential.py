"""Hopeless rows stop early (pipeline.measure.sequential) and a loaded row re-times only.

The bench's row loop is driven with a fake child (`bench_artifact`) that answers each prompt
with a scripted label, so the tests see which prompts a row was asked, in how many runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.measure import bench as bench_mod
from pipeline.measure.sequential import looks, order, upper_bound
from pipeline.prompts import ChatPrompt
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec


def test_looks_double_below_the_set_size() -> None:
    assert looks(200) == [20, 40, 80, 160]
    assert looks(20) == [] and looks(21) == [20]


def test_order_is_a_fixed_permutation() -> None:
    assert sorted(order(range(50))) == list(range(50)) and order(range(50)) == order(range(50))
    assert order(range(50)) != list(range(50))


def test_the_bound_rarely_stops_a_row_that_reaches_the_bar() -> None:
    """A set whose mean is exactly the bar, answered in random orders and looked at after 20,
    40, 80, 160 prompts: the bound falls below the bar at some look in at most 5 % of orders
    (the rule's promise under repeated looks); a plain 95 % interval per look would not hold
    it. Same seed every run, so the count is fixed."""
    rng = np.random.default_rng(1)
    bar, n = 0.8, 200
    population = np.array([1.0] * int(bar * n) + [0.0] * int((1 - bar) * n))
    marks = looks(n)
    stopped = 0
    for _ in range(2000):
        seq = rng.permutation(population)
        stopped += any(upper_bound(seq[:k], len(marks)) < bar for k in marks)
    assert stopped / 2000 <= 0.05


def test_a_row_far_below_the_bar_is_stopped_at_the_first_look() -> None:
    assert upper_bound([0.0] * 20, n_looks=4) < 0.786 < upper_bound([1.0] * 10 + [0.0] * 10, 4)


def _task() -> Any:
    return make_task(TaskSpec(name="t", kind="label", labels=("billing", "other"),
                              primary="accuracy", primary_set="hand"))


def _eval(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "prompt": f"p{i}", "reference": "billing",
             "set": "hand" if i < n - 5 else "gen"} for i in range(n)]


def _fake(monkeypatch: pytest.MonkeyPatch, answer: str, loads: list[bool] | None = None
          ) -> list[dict[str, Any]]:
    """Replace the child process: every prompt answered `answer`; record each call."""
    from pipeline.measure import latency

    calls: list[dict[str, Any]] = []
    load_iter = iter(loads or [])

    def fake(model: Path, prompt: ChatPrompt, prompts: list[str], **kw: Any) -> dict[str, Any]:
        calls.append({"prompts": list(prompts), **kw})
        timed = 0 if kw.get("untimed") else (kw.get("latency_prompts") or len(prompts))
        contended = next(load_iter, False)
        results = [{"response": answer, "prompt_tokens": 5,
                    "prefill_tokens": 5, "completion_tokens": 2, "ttft_s": 0.01 * (1 + contended),
                    "decode_s": 0.01, "total_s": 0.02, "timed": i < timed}
                   for i, _ in enumerate(prompts)]
        return {"results": results, "load_s": 0.1, "peak_rss_mb": 10.0, "runtime": "fake",
                "max_tokens": 8, "load": {"other_cpu_pct": 60.0 if contended else 1.0,
                                          "contended": contended}}

    monkeypatch.setattr(latency, "bench_artifact", fake)
    return calls


def _row(tmp_path: Path, stop: float | None) -> dict[str, Any]:
    (tmp_path / "m.gguf").write_bytes(b"x")
    return {"label": "base", "role": "base", "model": tmp_path / "m.gguf",
            "prompt": ChatPrompt(system="s"), **({"stop_below": stop} if stop is not None else {})}


def test_a_hopeless_row_stops_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, "other")  # every answer wrong
    evals = _eval(120)
    result = bench_mod.bench_rows([_row(tmp_path, 0.8)], evals, tmp_path, _task(), threads=2,
                                  n_ctx=64, max_tokens=8, latency_prompts=4, log=lambda m: None)
    row = result["rows"][0]
    assert row["stopped"]["after"] == 20 and row["stopped"]["upper_bound"] < 0.8
    assert row["accuracy"] == 0.0 and row["latency_prompts"] == 4 and row["eval_set"] == "hand"
    # the first run times the first 4 eval prompts (as every row does), then the sample
    assert calls[0]["prompts"][:4] == ["p0", "p1", "p2", "p3"] and not calls[0]["untimed"]
    answered = [json.loads(line) for line in (tmp_path / "answers.jsonl").open()]
    asked = {p for c in calls for p in c["prompts"]}
    assert sum("base" in a for a in answered) == len(asked) < 30
    assert all(int(a["id"]) < 115 for a in answered if "base" in a)  # the primary set only
    md = __import__("pipeline.report.render", fromlist=["x"]).render_markdown(
        {"target": "t", "bench": result, "task": {"name": "t", "kind": "label",
                                                   "metric": "accuracy", "columns": []}})
    assert "| base † |" in md and "stopped after 20 prompts" in md


def test_a_row_that_may_reach_the_bar_answers_every_prompt(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, "billing")
    result = bench_mod.bench_rows([_row(tmp_path, 0.8)], _eval(120), tmp_path, _task(), threads=2,
                                  n_ctx=64, max_tokens=8, latency_prompts=4, log=lambda m: None)
    row = result["rows"][0]
    assert "stopped" not in row and row["accuracy"] == 1.0
    answered = [json.loads(line) for line in (tmp_path / "answers.jsonl").open()]
    assert all(a["base"] == "billing" for a in answered) and len(answered) == 120


def test_a_row_without_a_bar_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, "other")
    bench_mod.bench_rows([_row(tmp_path, None)], _eval(60), tmp_path, _task(), threads=2,
                         n_ctx=64, max_tokens=8, latency_prompts=4, log=lambda m: None)
    assert len(calls) == 1 and len(calls[0]["prompts"]) == 60


def test_a_loaded_row_retimes_only_its_timed_prompts(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, "billing", loads=[True, False])
    result = bench_mod.bench_rows([_row(tmp_path, None)], _eval(60), tmp_path, _task(), threads=2,
                                  n_ctx=64, max_tokens=8, latency_prompts=4, log=lambda m: None)
    assert [len(c["prompts"]) for c in calls] == [60, 4]  # answers kept; 4 prompts re-timed
    row = result["rows"][0]
    assert row["contended"] is False and row["ttft_mean_s"] == 0.01


def test_intervals_pair_a_stopped_row_on_the_prompts_it_answered() -> None:
    from pipeline.measure.uncertainty import add_intervals

    task = _task()
    evals = _eval(40)
    answers = [{"id": e["id"], "reference": "billing", "distilled": "billing",
                **({"base": "other"} if i < 20 else {})} for i, e in enumerate(evals)]
    rows = [{"role": "base", "accuracy": 0.0, "eval_set": "hand"},
            {"role": "distilled", "accuracy": 1.0, "eval_set": "hand"}]
    steps = [{"from_role": "base", "to_role": "distilled", "delta": 1.0}]
    add_intervals(task, "accuracy", rows, answers, evals, steps)
    assert rows[0]["ci"] == [0.0, 0.0] and steps[0]["prompts"] == 20 and steps[0]["delta"] == 1.0
