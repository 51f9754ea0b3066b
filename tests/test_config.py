"""Config validation at the boundary: one line naming the bad key, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.errors import UserError
from tests.conftest import run_cli


def test_default_config_loads() -> None:
    cfg = load_config(None)
    assert cfg.teacher.model == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert cfg.student.model == "smollm2-135m-instruct-q4_1"
    assert cfg.distill.epochs == 2
    assert cfg.distill.bf16 == "auto"  # never a precision the machine only emulates


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "expected"), [
    ('[teacher]\nmodel="x"\ntemprature=0\n[student]\nmodel="y"\n', "teacher.temprature: unknown key"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nepochs="many"\n', "distill.epochs"),
    ('[teacher]\nmodel="x"\npath="y.gguf"\n[student]\nmodel="y"\n', "exactly one of"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nbatch_size=0\n', "distill.batch_size"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nmode="logit"\n', "distill.mode"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nmode="auto"\nteacher_logits="on_the_fly"\n',
     "teacher_logits = 'on_the_fly' needs teacher.backend = 'transformers'"),
    ('[teacher]\nbackend="openai"\nbase_url="http://h/v1"\nmodel_name="m"\n[student]\nmodel="y"\n'
     '[distill]\nmode="logits"\n', "an HTTP endpoint gives no logits"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nmode="logits"\non_policy=0.5\n',
     "on_policy > 0 needs"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nkd_weight=1.5\n', "distill.kd_weight"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nbf16="sometimes"\n', "distill.bf16"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\ndevice="gpu"\n', "distill.device"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nseeds=0\n', "distill.seeds"),
    ('[teacher]\nmodel="x"\n[student]\nmodel="y"\n[distill]\nseeds=3\n[bench]\ntorch_row=false\n',
     "distill.seeds > 1 compares the seeds' fp32 students: set bench.torch_row = true"),
])
def test_bad_config_names_the_key(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(_write(tmp_path, body))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_example_configs_validate() -> None:
    """Every example config (examples/*.toml and examples/<task>/*.toml) loads, and the data
    files it names exist."""
    paths = sorted((Path(__file__).resolve().parents[1] / "examples").glob("**/*.toml"))
    assert len(paths) >= 3
    for path in paths:
        task = load_config(path).task
        for key in ("train_data", "eval_data"):
            value = getattr(task, key, None)
            assert value is None or Path(value).exists(), (path, key, value)


def test_an_own_task_config_needs_only_its_task_table(tmp_path: Path) -> None:
    """[task] alone: the teacher, student and tuning come from the embedded default; a tuning
    table's keys override the default's one by one; a [teacher] table replaces it whole."""
    default = load_config(None)
    own = load_config(_write(tmp_path, '[task]\nname = "extraction"\n[bench]\nmax_tokens = 64\n'
                                       '[goal]\nmin_quality = 0.8\n'))
    assert own.teacher == default.teacher and own.student == default.student
    assert own.bench.max_tokens == 64 and own.bench.latency_prompts == default.bench.latency_prompts
    assert own.goal.min_quality == 0.8 and own.goal.requests_per_day == default.goal.requests_per_day
    http = load_config(_write(tmp_path, '[teacher]\nbackend = "openai"\nbase_url = "http://h/v1"\n'
                                        'model_name = "m"\n'))
    assert http.teacher.backend == "openai" and http.teacher.model is None  # not the default's file


def test_the_build_folder_holds_the_effective_config(tmp_path: Path) -> None:
    import json

    from pipeline import runner
    from pipeline.targets import load_target

    cfg = load_config(_write(tmp_path, '[distill]\nepochs = 3\n'))
    out = tmp_path / "out"
    paths = {step.id: tmp_path / step.id for step in runner.PLAN}  # nothing to copy: empty dirs
    runner.publish(out, paths, load_target("cpu-int4"), {"steps": []},
                   config=cfg.model_dump(mode="json", exclude_none=True))
    written = json.loads((out / "config.json").read_text())
    assert written["distill"]["epochs"] == 3 and written["teacher"]["model"] == cfg.teacher.model


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(_write(tmp_path, "[teacher\nmodel="))
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_apply() -> None:
    cfg = load_config(DEFAULT_CONFIG, {"task.train_data": "x.jsonl", "distill.seeds": 3})
    assert cfg.task.train_data == str(Path("x.jsonl").resolve())  # relative to the working dir
    assert cfg.distill.seeds == 3


@pytest.mark.parametrize("args", [
    ("build", "--config", "/nonexistent/cfg.toml"),
    ("build", "--target", "no-such-target"),
    ("build", "--bogus-flag"),
    ("targets", "show", "nope"),
    ("build", "--seeds", "0"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run_cli(*args, "--build-dir", str(tmp_path / "b")) if args[0] == "build" else run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distill-edge: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()  # nothing half-written


def test_cli_unknown_target_lists_available(tmp_path: Path) -> None:
    proc = run_cli("build", "--target", "cpu-int3", "--build-dir", str(tmp_path))
    assert "cpu-int4" in proc.stderr and "cpu-int8" in proc.stderr


def test_label_descriptions_reach_the_teachers_prompt_only(tmp_path: Path) -> None:
    """labels = {label = "what it covers"}: the labels keep their order and scoring; the
    teacher's default prompt says what each covers, the student's stays short."""
    (tmp_path / "t.jsonl").write_text('{"id": "1", "prompt": "p"}\n')
    head = '[task]\nname = "t"\nkind = "label"\ninstructions = "Route it."\ntrain_data = "t.jsonl"\n'
    described = load_config(_write(tmp_path, head + 'labels = {billing = "invoices, charges", '
                                                   'shipping = "parcels, delivery dates"}\n')).task
    plain = load_config(_write(tmp_path, head + 'labels = ["billing", "shipping"]\n')).task
    assert described.labels == plain.labels and described.spec == plain.spec
    assert described.teacher_prompt.system == (plain.teacher_prompt.system
                                               + "\n- billing: invoices, charges"
                                               + "\n- shipping: parcels, delivery dates")
    assert described.student_prompt == plain.student_prompt
    with pytest.raises(UserError, match="labels: 'billing' needs a label of the task and a description"):
        load_config(_write(tmp_path, head + 'labels = {billing = " ", shipping = "parcels"}\n'))
