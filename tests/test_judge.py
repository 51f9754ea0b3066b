"""The teacher as judge: verdict parsing, the order swap, pair dedupe, and the stage with a
fake judge backend (no model needed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.generation.backends import Request, Result
from pipeline.measure.judge import combine, pairs, parse_verdict, tally
from pipeline.outputs import JudgeSummary
from pipeline.stage import BackendRuntime, StageContext
from pipeline.stages import judge as judge_stage
from pipeline.stages.judge import JudgeSettings, JudgeStage
from pipeline.tasks.inputs import EVAL_FILE, write_rows


@pytest.mark.parametrize(("text", "verdict"), [
    ("A", "A"), (" b.", "B"), ("Answer A is better", "A"), ("Tie", "tie"), ("equal", "tie"),
    ("**B**", "B"), ("Both are fine", "tie"), ("I think", None), ("", None), ("Apple", None)])
def test_parse_verdict(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(("as_a", "as_b", "outcome"), [
    ("A", "B", "win"),     # preferred in both slots
    ("B", "A", "loss"),
    ("A", "A", "tie"),     # the judge followed slot A: position bias cancels out
    ("B", "B", "tie"),
    ("A", "tie", "win"),   # a win and a tie
    ("tie", "A", "loss"),  # a tie and a loss (as B it lost: the judge picked A, the teacher)
    (None, "B", "win"),    # an unreadable verdict counts as a tie in its order
    (None, None, "tie")])
def test_both_orders_combine(as_a: Any, as_b: Any, outcome: str) -> None:
    assert combine(as_a, as_b) == outcome


def test_identical_answers_are_ties_and_shared_answers_judged_once() -> None:
    rows = [{"id": "1", "prompt": "p1"}, {"id": "2", "prompt": "p2"}, {"id": "3", "prompt": "p3"}]
    answers = {"distilled": ["same  text", "x", "y"], "distilled_fp": ["other", "x", "z"]}
    to_judge, plan = pairs(rows, answers, ["same text", "t2", "t3"], n=2)
    # row 1 distilled equals the teacher up to spacing; row 2's "x" is shared; row 3 is past n
    assert to_judge == {("1", "other"): "same text", ("2", "x"): "t2"}
    verdicts = {("1", "other"): ("B", "A"), ("2", "x"): ("A", "B")}
    result = tally(plan, verdicts)
    assert result["distilled"] == {"win": 1, "tie": 1, "loss": 0, "n": 2, "win_rate": 0.75}
    assert result["distilled_fp"] == {"win": 1, "tie": 0, "loss": 1, "n": 2, "win_rate": 0.5}


class _FakeJudge:
    """A judge that ranks 'good' > anything else > 'bad'; with `biased`, always says A."""

    wave = None

    def __init__(self, biased: bool) -> None:
        self.biased, self.requests = biased, []  # type: ignore[var-annotated]

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        for req in requests:
            self.requests.append(req)
            user = req.messages[-1]["content"]
            a, rest = user.split("Answer A:\n")[1].split("\n\nAnswer B:\n")
            b = rest.split("\n\nWhich")[0]
            rank = {"good": 2, "bad": 0}
            ra, rb = (rank.get(x.split()[0], 1) for x in (a, b))
            verdict = "A" if self.biased or ra > rb else "B" if rb > ra else "tie"
            yield Result(request=req, text=verdict)

    def close(self) -> None:
        pass


def _bench(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("biased", [False, True])
def test_stage_judges_each_distinct_answer_in_both_orders(tmp_path: Path, monkeypatch: Any,
                                                          biased: bool) -> None:
    (tmp_path / "eval").mkdir()
    write_rows(tmp_path / "eval" / EVAL_FILE, [{"id": str(i), "prompt": f"question {i}",
                                               "reference": "r", "answer": "r"} for i in range(3)])
    ids = [{"id": str(i), "reference": "r"} for i in range(3)]
    said = ["good one", "bad", "teacher says"]
    inputs = {
        "eval": tmp_path / "eval",
        "bench_teacher": _bench(tmp_path / "bt", [{**r, "teacher": "teacher says"} for r in ids]),
        "bench_student": _bench(tmp_path / "bs", [{**r, "distilled_torch": a} for r, a in
                                                  zip(ids, said, strict=True)]),
        "bench_labels": _bench(tmp_path / "bl", list(ids)),  # no labelled train rows: no row
        "bench": _bench(tmp_path / "b", [{**r, "distilled": a, "base": "bad"} for r, a in
                                         zip(ids, said, strict=True)]),
    }
    fake = _FakeJudge(biased)
    monkeypatch.setattr(judge_stage, "make_backend", lambda *a, **k: fake)
    out = tmp_path / "out"
    out.mkdir()
    settings = JudgeSettings(enabled=True, rows=3, backend="llama_cpp", n_ctx=512, threads=1)
    JudgeStage().run(StageContext(name="judge", settings=settings, inputs=inputs, out_dir=out,
                                  runtime=BackendRuntime()))
    result = json.loads((out / "judge.json").read_text())
    # distinct answers differing from the teacher's: (0,"good one"), (1,"bad"), (0,"bad"), (2,"bad")
    assert result["pairs"] == 4 and len(fake.requests) == 8
    roles = result["roles"]
    assert "teacher" not in roles
    if biased:  # always "A": every pair is a tie once both orders are counted
        assert roles["distilled"] == {"win": 0, "tie": 3, "loss": 0, "n": 3, "win_rate": 0.5}
    else:
        assert roles["distilled"] == {"win": 1, "tie": 1, "loss": 1, "n": 3, "win_rate": 0.5}
        assert roles["base"] == {"win": 0, "tie": 0, "loss": 3, "n": 3, "win_rate": 0.0}
        assert roles["distilled_torch"] == roles["distilled"]
    lines = (out / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_stage_off_writes_only_that_it_was_off(tmp_path: Path) -> None:
    result = JudgeStage().run(StageContext(name="judge", settings=JudgeSettings(enabled=False),
                                           inputs={}, out_dir=tmp_path))
    assert result == JudgeSummary(enabled=False)
    assert json.loads((tmp_path / "judge.json").read_text()) == {"enabled": False}


def test_report_names_the_judge() -> None:
    from pipeline.report.render import render_markdown
    from tests.test_report import fixture_report

    report = fixture_report()
    report["judge"] = {"enabled": True, "rows": 3, "judge": "teacher.gguf", "pairs": 4,
                       "calls": 8, "unreadable": 0, "roles": {}}
    report["task"] = {"name": "faq", "kind": "text", "metric": "chrf",
                      "columns": [["chrF", "chrf", "{:.3f}"], ["judged vs teacher W/T/L", "judge", "{}"]]}
    report["bench"]["rows"][-1].update({"chrf": 0.7, "judge": "1/1/1"})
    text = render_markdown(report)
    assert "judged vs teacher W/T/L" in text and "| 1/1/1 |" in text
    assert "Judged by the teacher (teacher.gguf), not by people" in text


def test_judge_is_a_task_setting_and_off_by_default(tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.targets import load_target

    target = load_target("cpu-int4")
    assert not JudgeStage().settings(load_config(None), target).enabled
    (tmp_path / "t.jsonl").write_text('{"id": "1", "prompt": "q", "reference": "a"}\n')
    path = tmp_path / "c.toml"
    path.write_text('[teacher]\nmodel = "qwen2.5-coder-1.5b-instruct-q4_k_m"\n'
                    '[student]\nmodel = "smollm2-135m-instruct-q4_1"\n'
                    '[task]\nname = "faq"\nkind = "text"\ninstructions = "Answer."\n'
                    'train_data = "t.jsonl"\njudge = true\njudge_rows = 8\n')
    s = JudgeStage().settings(load_config(path), target)
    assert s.enabled and s.rows == 8 and s.backend == "llama_cpp" and s.teacher_prompt is not None
