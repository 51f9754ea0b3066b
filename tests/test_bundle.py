"""The bundle's pieces: the Ollama Modelfile, and a run.py that needs nothing but its folder."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from pipeline.runkit import run as run_bundle
from pipeline.stages.bundle import modelfile

GEN = {"system": "Extract the order.", "user_template": "{prompt}", "n_ctx": 1024,
       "max_tokens": 96}


def test_modelfile_for_a_chatml_student() -> None:
    text = modelfile("model.Q4_K_M.gguf", GEN, "{% for m in messages %}<|im_start|>{{ m.role }}")
    lines = text.splitlines()
    assert "FROM ./model.Q4_K_M.gguf" in lines and 'PARAMETER stop "<|im_end|>"' in lines
    assert 'SYSTEM """Extract the order."""' in lines and "PARAMETER temperature 0" in lines
    assert "PARAMETER num_ctx 1024" in lines and "PARAMETER num_predict 96" in lines
    assert "<|im_start|>assistant" in text and "{{ .System }}" in text


def test_modelfile_leaves_an_unknown_template_to_the_gguf() -> None:
    text = modelfile("m.gguf", {**GEN, "user_template": "Order: {prompt}"}, "[INST] {{ x }}")
    assert "TEMPLATE" not in text and "PARAMETER stop" not in text
    assert "'Order: {prompt}'" in text  # the trained user-message form is written down


def test_run_py_imports_only_the_standard_library_and_runtimes() -> None:
    """runkit ships in the bundle without distill-edge: its modules import the standard
    library, the runtimes, llguidance and each other (relatively), nothing else."""
    modules: set[str] = set()
    for path in Path(run_bundle.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules |= {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    third_party = modules - set(sys.stdlib_module_names) - {"__future__"}
    # llguidance: only for a constrained target's grammar; runkit: the launcher's import
    assert third_party == {"llama_cpp", "onnxruntime_genai", "openvino_genai", "numpy", "llguidance",
                           "runkit"}


def test_messages_follow_the_trained_format() -> None:
    msgs = run_bundle.messages({"system": "S", "user_template": "Order: {prompt}"}, "2 lamps")
    assert msgs == [{"role": "system", "content": "S"}, {"role": "user", "content": "Order: 2 lamps"}]
