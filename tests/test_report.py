"""Report rendering and comparison on a fixture report (no models needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.measure.decision import decide_ship, judge
from pipeline.measure.quality import teacher_agreement
from pipeline.measure.verdict import attribution, decide, with_decision
from pipeline.report.compare import compare_reports
from pipeline.report.render import render_html, render_markdown
from pipeline.tasks import make_task

GOOD = '{"name":"Ann Lee","item":"lamps","quantity":2,"city":"Oslo","date":"2025-03-04"}'


def _row(role: str, label: str, acc: float, mb: float, tok_s: float) -> dict[str, Any]:
    return {"role": role, "label": label, "file": "m.gguf", "file_mb": mb, "valid": 1.0,
            "field_accuracy": acc, "exact": acc, "mean_prompt_tokens": 90.0, "ttft_mean_s": 0.08,
            "prefill_tok_s": 500.0, "decode_tok_s": tok_s, "mean_completion_tokens": 40.0,
            "peak_rss_mb": 300.0, "load_s": 0.3}


def fixture_report(shipped_acc: float = 0.9) -> dict[str, Any]:
    rows = [_row("teacher", "teacher", 0.89, 1117.3, 25.0), _row("base", "base Q4_K_M", 0.0, 105.5, 110.0),
            _row("distilled_fp", "distilled F16", 0.93, 270.9, 80.0),
            _row("distilled", "distilled Q4_K_M", shipped_acc, 105.5, 96.0)]
    loss = round(0.93 - shipped_acc, 4)
    decision = decide_ship([{"check": "max_quant_loss", "limit": 0.02, "value": loss,
                             "ci": [loss - 0.005, loss + 0.005], "prompts": 60, "on": "hand-written",
                             "outcome": judge((loss - 0.005, loss + 0.005), 0.02,
                                              higher_is_better=False),
                             "text": f"distilled Q4_K_M vs distilled F16: loss {loss}"}], strict=False)
    from pipeline.outputs import REPORT_SCHEMA
    from pipeline.tasks import KINDS

    task = {"name": "extraction", "kind": "json", "metric": "field_accuracy",
            "columns": [list(c) for c in KINDS["json"].columns]}
    return {"schema": REPORT_SCHEMA, "target": "cpu-int4", "task": task,
            "bench": {"eval_rows": 60, "threads": 2, "rows": rows},
            "verdict": with_decision(decide(rows, 0.9, 100_000, 0, "field_accuracy"), decision),
            "attribution": attribution(rows, "field_accuracy"),
            "decision": decision,
            "data": {"rows_in": 200, "kept": 190, "dropped": 10, "drops_by_reason": {"extra_keys": 10},
                     "kept_teacher_metric": "field_accuracy", "kept_teacher_quality": 0.97},
            "teacher": {"rows": 200, "rows_this_run": 200, "failed": 0, "wall_s": 393.4,
                        "prompt_tokens": 90000, "prefill_tokens": 20000, "completion_tokens": 8000,
                        "rows_per_min": 30.5, "decode_tok_s": 20.1},
            "training_curve": [{"step": i, "loss": 1.0 / i} for i in range(1, 20)],
            "stage_wall_s": {"teacher": 385.0}, "environment": {"cpu": "test cpu"}, "libraries": {}}


def test_markdown_has_table_verdict_gate_and_attribution() -> None:
    text = render_markdown(fixture_report())
    assert "| distilled Q4_K_M | 105.5 |" in text
    assert "## Verdict" in text and "## Decision" in text
    assert "Not shipped: distilled Q4_K_M vs distilled F16: loss 0.03" in text  # verdict
    assert "FAIL: distilled Q4_K_M vs distilled F16: loss 0.03" in text  # decision section
    assert "quantize: distilled F16 → distilled Q4_K_M: -0.030" in text


def test_html_is_self_contained_with_four_plots() -> None:
    page = render_html(fixture_report(shipped_acc=0.925))
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert "PASS: distilled Q4_K_M" in page
    assert not re.search(r'(src|href)="https?:', page)


def test_teacher_agreement() -> None:
    other = GOOD.replace("Oslo", "Bergen")
    rows = [{"id": "1", "reference": {}, "teacher": GOOD, "distilled": GOOD, "base": other},
            {"id": "2", "reference": {}, "teacher": "not json", "distilled": GOOD, "base": GOOD}]
    task = make_task(load_config(None).task.spec)
    assert teacher_agreement(rows, task) == {"distilled": 1.0, "base": 0.8}


def test_compare_shows_deltas() -> None:
    text = compare_reports(fixture_report(0.9), fixture_report(0.8), "a", "b")
    assert "| distilled | distilled Q4_K_M | distilled Q4_K_M | 0.900 | 0.800 | -0.100 |" in text


def test_a_multi_seed_build_names_every_seed_and_the_shipped_one() -> None:
    from pipeline.measure.seeds import seed_table

    report = fixture_report()
    report["seeds"] = {"teacher": 0, "distill": 1, "distill_runs": seed_table(
        [{"seed": 0, "value": 0.88}, {"seed": 1, "value": 0.9}, {"seed": 2, "value": 0.93}],
        "field_accuracy")}
    text = render_markdown(report)
    assert "## Seeds" in text and "seed 2 0.930" in text and "Shipped: seed 1, the median" in text
    assert "## Seeds" not in render_markdown(fixture_report())


def test_the_caption_says_which_prompts_the_latency_columns_average() -> None:
    report = fixture_report()
    assert "answered one at a time" not in render_markdown(report)
    for row in report["bench"]["rows"]:
        row["latency_prompts"] = 16
    assert "on the first 16 eval prompts answered one at a time" in render_markdown(report)


def test_a_report_from_another_version_is_refused_in_one_line(tmp_path: Path) -> None:
    """report.json carries its schema number: one written by an older distill-edge (no
    `schema`, or another number) gets one line saying to re-run the report step, not a
    KeyError deep in rendering; a current one renders."""
    import json

    from tests.conftest import run_cli

    old = {k: v for k, v in fixture_report().items() if k != "schema"}
    (tmp_path / "report.json").write_text(json.dumps(old))
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "this one reads 2): re-run the report step (`distill-edge build` with the same target "
        "re-runs it from cache); or rebuild the target to write it again")
    (tmp_path / "report.json").write_text(json.dumps(fixture_report()))
    assert run_cli("report", str(tmp_path)).returncode == 0
