"""Teacher rows survive a crash: a torn last line is dropped and redone, nothing duplicated,
and a resumed batched run writes the rows an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.generation.backends import Request
from pipeline.stages.teacher import _done_rows, waves
from tests.conftest import THREADS


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    good = [{"id": "a", "response": "x"}, {"id": "b", "response": "y"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"id": "c", "resp')
    done = _done_rows(path)
    assert list(done) == ["a", "b"]
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")


def test_no_file_means_nothing_done(tmp_path: Path) -> None:
    assert _done_rows(tmp_path / "rows.jsonl") == {}


def test_an_unfinished_wave_is_sent_whole_and_finished_waves_not_at_all() -> None:
    reqs = [Request(row_id=str(i), sample=0, messages=(), max_tokens=1, temperature=0.0, seed=0)
            for i in range(7)]
    done = {"0#0", "1#0", "2#0", "4#0"}  # wave 0-2 finished, wave 3-5 half, wave 6 not begun
    assert [[r.row_id for r in w] for w in waves(reqs, done, 3)] == [["3", "4", "5"], ["6"]]
    assert [[r.row_id for r in w] for w in waves(reqs, done, None)] == [["3", "5", "6"]]
    assert waves(reqs, {r.key for r in reqs}, 3) == []


@pytest.mark.e2e
def test_kill_9_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL the batched teacher stage mid-run and rerun it: every row exactly once, and
    the same rows, in the same order, as an uninterrupted run (the unfinished wave is redone
    whole, so every answer is decoded in the batch it had the first time)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[teacher]\nmodel = "smollm2-135m-instruct-q4_1"\nmax_tokens = 32\nconcurrency = 4\n'
                   f'threads = {THREADS}\n'
                   '[student]\nmodel = "smollm2-135m-instruct-q4_1"\n[task]\nmax_train_rows = 16\n')
    args = [str(Path(sys.executable).with_name("distill-edge")), "build", "--config", str(cfg),
            "--until", "teacher", "--build-dir"]
    args, ref_args = args + [str(tmp_path / "b")], args + [str(tmp_path / "ref")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    partial_rows = 0
    while time.time() < deadline and proc.poll() is None:
        files = list((tmp_path / "b" / "cache" / "teacher").glob("*.partial/rows.jsonl"))
        partial_rows = files[0].read_text().count("\n") if files else 0
        if partial_rows >= 5:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert 5 <= partial_rows < 16
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = next((tmp_path / "b" / "cache" / "teacher").glob("*[0-9a-f]/rows.jsonl"))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 16
    stats = json.loads((out.parent / "stats.json").read_text())
    assert stats["rows_this_run"] <= 16 - partial_rows
    ref = subprocess.run(ref_args, capture_output=True, text=True, check=False)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_out = next((tmp_path / "ref" / "cache" / "teacher").glob("*[0-9a-f]/rows.jsonl"))
    assert out.read_text() == ref_out.read_text()


def test_common_prefix_keeps_one_own_token() -> None:
    from pipeline.generation.llm_batch import common_prefix

    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 5]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps a token to get logits from
    assert common_prefix([]) == 0


def test_batched_generation_matches_one_at_a_time(smollm_gguf: Path) -> None:
    """One slot fed 5 prompts in turn (prefix shared, slot refilled) gives exactly the greedy
    answers of the one-at-a-time loop; 3 slots give every prompt once, with the same start.

    Only the start with 3 slots, and 4 of 5: a 3-token matmul rounds differently from a
    1-token one, and SmolLM2 (untrained for this task) has near-ties that then flip a few
    tokens in — on the current train split's second prompt (made-up names) already the first
    token (the 1.5B teacher matched 64/64). Attending to another slot's cells would derail
    every answer at token one.
    """
    from pipeline.config import load_config
    from pipeline.generation.llm import ChatRunner, open_gguf
    from pipeline.generation.llm_batch import BatchedChat
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import load_rows

    task = load_config(None).task
    runner = ChatRunner(open_gguf(smollm_gguf, 2048, THREADS))
    prompts = [r["prompt"] for r in load_rows(Path(str(task.train_data)), "train",
                                              make_task(task.spec))][:5]
    chats = [task.teacher_prompt.messages(p) for p in prompts]
    one_by_one = [runner.chat_messages(c, 24) for c in chats]
    single = dict(BatchedChat(runner, parallel=1, threads=THREADS).generate(chats, 24))
    assert [single[i].text for i in range(5)] == [g.text for g in one_by_one]
    # the few-shot prefix is prefilled once in all, not once per prompt
    prefix = task.teacher_prompt.system
    assert sum(g.prefill_tokens for g in single.values()) < sum(
        g.prompt_tokens for g in one_by_one) - 4 * len(runner.llm.tokenize(prefix.encode()))
    got = list(BatchedChat(runner, parallel=3, threads=THREADS).generate(chats, 24))
    assert sorted(i for i, _ in got) == list(range(5))
    assert sum(g.text[:16] == one_by_one[i].text[:16] for i, g in got) >= 4


def test_batched_answers_follow_the_task_grammar(smollm_gguf: Path) -> None:
    """[teacher] constrained: under a label task's grammar every batched answer is a label —
    from SmolLM2, which answers these prompts with prose when free — and one slot gives the
    one-at-a-time runner's constrained answers exactly."""
    from pipeline.constrain import grammar_for
    from pipeline.generation.llm import ChatRunner, open_gguf
    from pipeline.generation.llm_batch import BatchedChat
    from pipeline.tasks.base import TaskSpec

    labels = ("billing", "shipping", "other")
    grammar = grammar_for(TaskSpec(name="t", kind="label", labels=labels))
    runner = ChatRunner(open_gguf(smollm_gguf, 1024, THREADS))
    chats = [[{"role": "user", "content": f"Which team handles this? {m}"}]
             for m in ("My card was charged twice.", "Where is my parcel?", "Hello there",
                       "Refund please", "The box arrived broken")]
    free = [g.text for _, g in sorted(BatchedChat(runner, 3, THREADS).generate(chats, 12))]
    assert not all(t in labels for t in free)  # the grammar is what makes them labels
    got = dict(BatchedChat(runner, 3, THREADS).generate(chats, 12, grammars=[grammar] * 5))
    assert sorted(got) == list(range(5)) and all(g.text in labels for g in got.values())
    one = dict(BatchedChat(runner, 1, THREADS).generate(chats, 12, grammars=[grammar] * 5))
    assert [one[i].text for i in range(5)] == [
        runner.chat_messages(c, 12, grammar=grammar).text for c in chats]


def test_an_openai_teacher_asks_for_the_schema_of_a_json_grammar() -> None:
    """A json task's grammar reaches an OpenAI-compatible server as `response_format`, its
    copy fields an enum of the message's spans; a label grammar (lark) asks for nothing."""
    from pipeline.constrain import grammar_for
    from pipeline.generation.backends import takes_grammar
    from pipeline.generation.backends.openai import response_format
    from pipeline.tasks.base import TaskSpec

    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"], "additionalProperties": False}
    spec = TaskSpec(name="t", kind="json", json_schema=schema, copy_fields=("name",))
    json_grammar = grammar_for(spec)
    messages = [{"role": "system", "content": "Extract."}, {"role": "user", "content": "Ann Lee here"}]
    fmt = response_format(json_grammar, messages)
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["name"]["enum"] == [
        "Ann", "Ann Lee", "Ann Lee here", "Lee", "Lee here", "here"]
    label_grammar = grammar_for(TaskSpec(name="t", kind="label", labels=("a", "b")))
    assert response_format(label_grammar, messages) is None and response_format(None, messages) is None
    assert takes_grammar("openai", json_grammar) and not takes_grammar("openai", label_grammar)
    assert takes_grammar("llama_cpp", label_grammar) and not takes_grammar("transformers", json_grammar)


def test_a_constrained_teacher_sends_the_task_grammar_and_keys_it() -> None:
    """[teacher] constrained = true puts the task grammar in the teacher's settings (its cache
    key) and on every request; off, the settings hold no grammar field at all (the key an
    unconstrained teacher always had); a backend that cannot take it says why."""
    from pipeline.config import load_config
    from pipeline.constrain import grammar_for, teacher_grammar
    from pipeline.stages.teacher import TeacherStage, _requests
    from pipeline.targets import load_target

    target, stage = load_target("cpu-int4"), TeacherStage()
    free = stage.settings(load_config(None), target)
    assert "grammar" not in free.key_dict() and "grammar_skipped" not in free.key_dict()
    on = load_config(None, {"teacher.constrained": True})
    s = stage.settings(on, target)
    assert s.grammar == grammar_for(on.task.spec, on.task.date_fields)
    reqs = _requests([{"id": "1", "prompt": "Ann Lee, 2 lamps", "reference": None, "split": "train"}], s)
    assert [r.grammar for r in reqs] == [s.grammar]
    grammar, why = teacher_grammar(on.task.spec, on.task.date_fields, "transformers", True)
    assert grammar is None and why.startswith("the transformers teacher backend cannot decode")
