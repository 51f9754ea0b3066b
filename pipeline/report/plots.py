"""Report plots as self-contained PNG data URIs (matplotlib, headless Agg backend).

Example:
    python -c "from pipeline.report.plots import decode_speed; \
        print(decode_speed([{'label': 'a', 'decode_tok_s': 10.0}])[:30])"
"""

from __future__ import annotations

import base64
import io
from typing import Any


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed for a file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    return fig, ax


def _data_uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def quality_vs_size(rows: list[dict[str, Any]], metric: str) -> str:
    """The task's primary metric against file size, one labelled point per artifact."""
    fig, ax = _figure()
    for row in rows:
        ax.scatter(row["file_mb"], row[metric], s=40)
        ax.annotate(row["label"], (row["file_mb"], row[metric]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("file size (MB, log scale)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Quality vs size")
    return _data_uri(fig)


def decode_speed(rows: list[dict[str, Any]]) -> str:
    """Decode tokens/s per artifact, horizontal bars."""
    fig, ax = _figure()
    labels = [r["label"] for r in rows]
    ax.barh(labels, [r["decode_tok_s"] for r in rows], color="#4c78a8")
    ax.invert_yaxis()
    ax.set_xlabel("decode tokens/s (higher is better)")
    ax.set_title("Decode speed")
    return _data_uri(fig)


def loss_curve(curve: list[dict[str, Any]]) -> str:
    """Training loss per optimizer step, and the held-out (eval split) loss per epoch."""
    fig, ax = _figure()
    train = [p for p in curve if "loss" in p]
    held_out = [p for p in curve if "eval_loss" in p]
    ax.plot([p["step"] for p in train], [p["loss"] for p in train], color="#f58518",
            label="train")
    if held_out:
        ax.plot([p["step"] for p in held_out], [p["eval_loss"] for p in held_out], "o-",
                color="#4c78a8", label="eval (reference answers)")
    if kl := [p for p in held_out if "eval_kl" in p]:  # logit KD: distance to the teacher
        ax.plot([p["step"] for p in kl], [p["eval_kl"] for p in kl], "s--", color="#54a24b",
                label="eval KL(teacher ‖ student)")
    if held_out:
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per reply token (log scale)")
    ax.set_title("Distillation: train and eval loss")
    return _data_uri(fig)


def data_card(data: dict[str, Any]) -> str:
    """Kept teacher rows and drops per filter reason."""
    fig, ax = _figure()
    names = ["kept", *data.get("drops_by_reason", {})]
    values = [data.get("kept", 0), *data.get("drops_by_reason", {}).values()]
    ax.bar(names, values, color=["#54a24b"] + ["#e45756"] * (len(names) - 1))
    ax.set_ylabel("teacher rows")
    ax.set_title("Teacher data: kept and dropped by reason")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return _data_uri(fig)


def confusion(data: dict[str, Any]) -> str:
    """A label task's confusion matrix: reference labels (rows) against answers (columns,
    the last one for replies that are no label)."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _figure()
    matrix = np.asarray(data["matrix"])
    labels = data["labels"]
    ConfusionMatrixDisplay(matrix, display_labels=labels[: matrix.shape[0]]).plot(
        ax=ax, colorbar=False, include_values=True, xticks_rotation=45)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("answer")
    ax.set_ylabel("reference")
    ax.set_title("Confusion matrix")
    return _data_uri(fig)
