"""Benchmark on the device: the ssh transport, the device-side bench, their one-line errors.

The loopback tests run against an sshd the test starts (tests/conftest.py `sshd`: its own
port, throwaway keys) — a real ssh connection, a real temporary folder on the "device".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.device import DeviceConfig, _result, bench_on_device, remote_script, ssh_command
from pipeline.errors import UserError
from pipeline.runkit.bench import PROMPTS_FILE, cpu_facts
from pipeline.runnable import Runnable, write_runnable

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_cpu_facts_read_x86_and_arm_boards() -> None:
    model, flags = cpu_facts(PI5_CPUINFO)
    assert model == "Raspberry Pi 5 Model B Rev 1.0" and {"asimd", "asimddp"} <= set(flags)
    model, flags = cpu_facts("model name\t: Intel(R) N100\nflags\t\t: fpu avx2 fma\n"
                             "model name\t: Intel(R) N100\nflags\t\t: fpu avx2 fma\n")
    assert model == "Intel(R) N100" and flags == ["avx2", "fma", "fpu"]


def test_device_config_refuses_options_key_text_and_missing_key_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an ssh address"):
        DeviceConfig(ssh="-oProxyCommand=evil")
    with pytest.raises(ValueError, match="never the key itself"):
        DeviceConfig(ssh="pi@pi5", identity_file=Path("-----BEGIN OPENSSH PRIVATE KEY-----"))
    with pytest.raises(ValueError, match="is not a file"):
        DeviceConfig(ssh="pi@pi5", identity_file=tmp_path / "nope")
    key = tmp_path / "id"
    key.write_text("k")
    cmd = ssh_command(DeviceConfig(ssh="pi@pi5", port=2222, identity_file=key))
    assert cmd[:3] == ["ssh", "-p", "2222"] and "BatchMode=yes" in cmd
    assert cmd[cmd.index("-i") + 1] == str(key.resolve()) and cmd[-2:] == ["--", "pi@pi5"]


def test_the_remote_script_quotes_the_interpreter_and_cleans_up() -> None:
    # written as shell words; a ";" in it is an argument, never a second command
    script = remote_script("'/opt/my env/bin/python' -S; reboot", "prompts.json")
    assert "'/opt/my env/bin/python' '-S;' reboot -m runkit.bench prompts.json" in script
    assert "trap 'rm -rf \"$d\"' EXIT" in script and "mktemp -d" in script


@pytest.mark.parametrize(("code", "stdout", "line"), [
    (255, "", "ssh failed (Connection refused); check [device] ssh/port/identity_file"),
    (127, "", "no `python3` there"),
    (3, '{"missing": ["llama_cpp"], "install": "pip install llama-cpp-python"}',
     "llama_cpp missing for `python3`; run `python3 -m pip install llama-cpp-python` there"),
])
def test_each_device_failure_is_one_line_naming_the_fix(code: int, stdout: str, line: str) -> None:
    proc = subprocess.CompletedProcess(["ssh"], code, stdout, "ssh: Connection refused\n")
    with pytest.raises(UserError) as err:
        _result(DeviceConfig(ssh="pi@pi5"), proc)
    assert line.split(" (")[0] in str(err.value) and "\n" not in str(err.value)


def _kit(tmp_path: Path, tiny_f16: Path, tiny_hf: Path, prompts: list[str]) -> Path:
    """A runnable folder of the tiny F16 GGUF with prompts.json, as the device stage writes."""
    import shutil

    export = tmp_path / "export"
    export.mkdir()
    shutil.copyfile(tiny_f16, export / "tiny.F16.gguf")
    (export / "prompt_format.json").write_text(json.dumps(
        {"system": "Route it.", "user_template": "{prompt}", "few_shot": []}))
    kit = tmp_path / "kit"
    write_runnable(kit, Runnable(format="gguf", runner="gguf", layout="file",
                                 artifact="tiny.F16.gguf", max_tokens=8, n_ctx=256, threads=1,
                                 execution_provider="cpu"), export=export, tokenizer=tiny_hf)
    (kit / PROMPTS_FILE).write_text(json.dumps({"prompts": prompts, "warmup": 1}))
    return kit


def _device(sshd: dict[str, Any], **extra: Any) -> DeviceConfig:
    return DeviceConfig(ssh=sshd["address"], port=sshd["port"], identity_file=sshd["identity_file"],
                        known_hosts=sshd["known_hosts"], python=sys.executable, **extra)


def test_the_device_times_the_bundle_code_over_loopback_ssh(sshd: dict[str, Any], tmp_path: Path,
                                                           tiny_f16: Path, tiny_hf: Path) -> None:
    """The folder goes over one ssh connection, is timed there by runkit.bench with its own
    run.py code (the same answers run.py gives), and the device's temporary folder is gone."""
    from pipeline.runkit import run as runkit_run

    kit = _kit(tmp_path, tiny_f16, tiny_hf, ["my parcel is late", "refund please"])
    raw = bench_on_device(_device(sshd), kit)
    assert raw["device"]["runtime"] == "llama-cpp-python" and raw["device"]["cores"] >= 1
    assert raw["device"]["cpu_flags"] and raw["load_s"] > 0 and raw["peak_rss_mb"] > 0
    assert [r["response"] for r in raw["results"]] == [
        runkit_run.answer(kit, p) for p in ("my parcel is late", "refund please")]
    assert all(r["ttft_s"] > 0 and r["pieces"] >= 1 for r in raw["results"])
    left = subprocess.run([*ssh_command(_device(sshd)), "ls -d ${TMPDIR:-/tmp}/distill-edge.* "
                           "2>/dev/null | wc -l"], capture_output=True, text=True, check=True)
    assert left.stdout.strip() == "0"  # removed on exit


def test_a_device_without_the_runtime_or_unreachable_is_one_line(
        sshd: dict[str, Any], tmp_path: Path, tiny_f16: Path, tiny_hf: Path) -> None:
    kit = _kit(tmp_path, tiny_f16, tiny_hf, ["hi"])
    # `-S`: no site-packages, so llama_cpp cannot be imported — a device without the runtime
    no_runtime = _device(sshd).model_copy(update={"python": f"{sys.executable} -S"})
    with pytest.raises(UserError, match=r"llama_cpp missing for .*-m pip install llama-cpp-python"):
        bench_on_device(no_runtime, kit)
    no_python = _device(sshd).model_copy(update={"python": "/nonexistent/python3"})
    with pytest.raises(UserError, match="no `/nonexistent/python3` there"):
        bench_on_device(no_python, kit)
    closed = _device(sshd).model_copy(update={"port": 1})
    with pytest.raises(UserError, match="ssh failed"):
        bench_on_device(closed, kit)
