"""The teacher-first check: the teacher answers a sample of the labelled eval prompts before
it labels the train prompts; clearly below the user's bar, the build stops (exit 3) unless
--force. The teacher is a fake backend answering from a script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_config
from pipeline.errors import NotShipped
from pipeline.generation.backends import Request, Result
from pipeline.outputs import TEACHER_CHECK, TeacherCheck
from pipeline.stage import BackendRuntime, StageContext
from pipeline.stages import teacher_check as tc
from pipeline.targets import load_target
from pipeline.tasks.inputs import EVAL_FILE, write_rows

LABELS = ("billing", "shipping")


def _config(tmp_path: Path, bar: float | None) -> Any:
    goal = f"[goal]\nmin_quality = {bar}\n" if bar is not None else ""
    path = tmp_path / "c.toml"
    path.write_text(f'[task]\nname = "t"\nkind = "label"\nlabels = {list(LABELS)!r}\n'
                    f'instructions = "Route it."\ntrain_data = "x.jsonl"\n{goal}'.replace("'", '"'))
    (tmp_path / "x.jsonl").write_text('{"id": "1", "prompt": "p"}\n')
    return load_config(path)


class _Teacher:
    """Answers "billing" to every prompt whose text ends in an even number."""

    wave = None

    def run(self, requests: list[Request]) -> list[Result]:
        return [Result(request=r, text="billing" if int(r.messages[-1]["content"][-1]) % 2 == 0
                       else "shipping") for r in requests]

    def close(self) -> None:
        pass


def _check(tmp_path: Path, bar: float | None, n: int) -> dict[str, Any]:
    cfg = _config(tmp_path, bar)
    settings = tc.TeacherCheckStage().settings(cfg, load_target("cpu-int4"))
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    write_rows(prompts / EVAL_FILE, [{"id": str(i), "prompt": f"ticket {i}", "reference": "billing"}
                                     for i in range(n)] + [{"id": "u", "prompt": "x1", "reference": None}])
    out = tmp_path / "out"
    out.mkdir()
    return tc.TeacherCheckStage().run(StageContext("teacher_check", settings, {"prompts": prompts}, out,
                                                   BackendRuntime())).model_dump(exclude_none=True)


def test_the_teacher_answers_a_fixed_sample_of_the_labelled_eval(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tc, "make_backend", lambda *a: _Teacher())
    result = _check(tmp_path, 0.9, 100)
    assert result["prompts"] == tc.SAMPLE and result["metric"] == "accuracy"
    asked = [json.loads(line)["id"] for line in (tmp_path / "out" / "answers.jsonl").open()]
    assert "u" not in asked and len(set(asked)) == tc.SAMPLE  # labelled prompts only
    evens = sum(int(i) % 2 == 0 for i in asked)
    assert result["value"] == round(evens / tc.SAMPLE, 4)
    assert result["ci"][0] < result["value"] < result["ci"][1]


def test_without_a_bar_of_the_users_own_the_check_asks_nothing(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tc, "make_backend", lambda *a: pytest.fail("the teacher was asked"))
    assert _check(tmp_path, None, 100) == {"enabled": False, "prompts": 0, "constrained": False}


@pytest.mark.parametrize(("ci", "outcome"), [((0.35, 0.65), "fail"), ((0.85, 0.95), "undecided"),
                                             ((0.91, 0.99), "pass")])
def test_the_verdict_names_the_outcome(ci: tuple[float, float], outcome: str) -> None:
    check = TeacherCheck(enabled=True, metric="accuracy", prompts=40, value=sum(ci) / 2, ci=ci)
    said = tc.verdict(check, 0.9)
    assert said.outcome == outcome and "[goal] bar 0.9" in said.text
    assert ("stronger teacher" in said.text) is (outcome == "fail")
    assert tc.verdict(check, None) == (None, "")


def test_a_teacher_clearly_below_the_bar_stops_the_build_unless_forced(tmp_path: Path) -> None:
    from pipeline.runner import _teacher_first

    (tmp_path / TEACHER_CHECK).write_text(json.dumps(
        {"enabled": True, "metric": "accuracy", "prompts": 40, "value": 0.5, "ci": [0.35, 0.65]}))
    with pytest.raises(NotShipped, match="stopped before the teacher labels the train prompts: "
                                         "teacher-first check: the teacher's accuracy 0.500"):
        _teacher_first(tmp_path, _config(tmp_path, 0.9), force=False)
    _teacher_first(tmp_path, _config(tmp_path, 0.9), force=True)  # --force goes on
    _teacher_first(tmp_path, _config(tmp_path, 0.4), force=False)  # a bar it reaches


def test_the_cli_says_a_stop_in_one_line_and_exits_3(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import cli, runner

    def stop(*args: Any, **kwargs: Any) -> None:
        assert kwargs.get("force") is False
        raise NotShipped("stopped before the teacher labels the train prompts: teacher-first check")

    monkeypatch.setattr(runner, "run_plan", stop)
    monkeypatch.setattr("sys.argv", ["distill-edge", "build"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "teacher-first check" in err and "Traceback" not in err
