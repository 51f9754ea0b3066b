"""Benchmark on the device: a runnable folder streamed over ssh, timed there, results back.

The build names its device in `[device]` (an ssh address, port, key file — the key stays in
its file or the ssh agent, never in the config). One ssh connection does everything: the
folder goes over as a tar stream on stdin, the device unpacks it into a fresh temporary
folder, runs `python -m runkit.bench` there (pipeline.runkit.bench: the standard library and
the artifact's runtime only) and deletes the folder on exit; the JSON it prints comes back on
stdout. The system `ssh` client does the talking, so ~/.ssh/config, agents and jump hosts
work as they do for the user.

Example:
    from pipeline.device import DeviceConfig, bench_on_device
    dev = DeviceConfig(ssh="pi@raspberrypi.local", identity_file=Path("~/.ssh/id_ed25519"))
    raw = bench_on_device(dev, Path("build/cpu-int4/bundle"))   # + prompts.json inside
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import UserError

# user@host, host, or an ~/.ssh/config alias; never an option (a leading "-")
ADDRESS = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._:\[\]-]+$")
CONNECT_TIMEOUT_S = 15
# exit codes of the remote command (pipeline.runkit.bench, the shell, ssh itself)
MISSING_RUNTIME, NO_PYTHON, SSH_FAILED = 3, 127, 255


class DeviceConfig(BaseModel):
    """`[device]`: where the shipped artifact's latency rows are measured (ssh)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ssh: str  # "user@host" or an ~/.ssh/config Host alias
    port: int = Field(22, ge=1, le=65535)  # the device's sshd port
    # private key file (its path, never its text); unset: the ssh agent / ~/.ssh defaults
    identity_file: Path | None = None
    known_hosts: Path | None = None  # a known_hosts file of its own; unset: ~/.ssh/known_hosts
    # the device's interpreter (shell words: quote a path with spaces), with the runtime installed
    python: str = "python3"
    timeout_s: int = Field(1800, ge=10)  # the whole remote run, copy included
    latency_prompts: int = Field(16, ge=1, le=1000)  # eval prompts timed on the device

    @field_validator("ssh")
    @classmethod
    def _address(cls, value: str) -> str:
        if not ADDRESS.match(value):
            raise ValueError(f"'{value}' is not an ssh address: write user@host (or a Host "
                             "alias of ~/.ssh/config)")
        return value

    @field_validator("identity_file")
    @classmethod
    def _key_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if "PRIVATE KEY" in str(value):
            raise ValueError("give the key's file path, never the key itself "
                             "(or leave it out and use the ssh agent)")
        path = value.expanduser()
        if not path.is_file():
            raise ValueError(f"{path} is not a file: give the private key's path "
                             "(or leave it out and use the ssh agent)")
        return path.resolve()


def ssh_command(dev: DeviceConfig) -> list[str]:
    """The ssh client's argv up to the remote command: batch mode (no password prompt), a
    first contact's host key accepted and kept, a changed one refused."""
    cmd = ["ssh", "-p", str(dev.port), "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=accept-new", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    if dev.identity_file:
        cmd += ["-i", str(dev.identity_file), "-o", "IdentitiesOnly=yes"]
    if dev.known_hosts:
        cmd += ["-o", f"UserKnownHostsFile={dev.known_hosts.expanduser()}"]
    return [*cmd, "--", dev.ssh]


def remote_script(python: str, prompts_file: str) -> str:
    """The shell command run on the device: unpack stdin into a fresh folder, bench there,
    remove the folder whatever happens."""
    py = shlex.join(shlex.split(python))
    return ('d=$(mktemp -d "${TMPDIR:-/tmp}/distill-edge.XXXXXX") || exit 1; '
            'trap \'rm -rf "$d"\' EXIT; tar -xf - -C "$d" || exit 1; cd "$d" || exit 1; '
            f"{py} -m runkit.bench {shlex.quote(prompts_file)}")


def _tar(folder: Path, into: Path) -> None:
    """The folder's files as a tar archive (links followed: the cache hard-links artifacts)."""
    with tarfile.open(into, "w", dereference=True) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)


def bench_on_device(dev: DeviceConfig, folder: Path, prompts_file: str = "prompts.json"
                    ) -> dict[str, Any]:
    """Run pipeline.runkit.bench on the device in a copy of `folder`; its JSON result.
    Unreachable device, no Python, a missing runtime: one UserError line each."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "kit.tar"
        _tar(folder, archive)
        with archive.open("rb") as stdin:
            try:
                proc = subprocess.run([*ssh_command(dev), remote_script(dev.python, prompts_file)],
                                      stdin=stdin, capture_output=True, text=True,
                                      timeout=dev.timeout_s, check=False)
            except FileNotFoundError:
                raise UserError("no ssh client here: install OpenSSH (e.g. apt-get install "
                                "openssh-client) to benchmark on a device") from None
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"device {dev.ssh}: no result after {dev.timeout_s} s "
                                   "(raise [device] timeout_s)") from None
    return _result(dev, proc)


def _result(dev: DeviceConfig, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The remote run's JSON, or one line saying what went wrong and what to do."""
    last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
    if proc.returncode == SSH_FAILED:
        raise UserError(f"device {dev.ssh} port {dev.port}: ssh failed ({last}); check "
                        "[device] ssh/port/identity_file and that `ssh` reaches it")
    if proc.returncode == NO_PYTHON:
        raise UserError(f"device {dev.ssh}: no `{dev.python}` there ({last}); install Python 3 "
                        "or set [device] python to its interpreter")
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"device {dev.ssh}: the bench exited {proc.returncode} without a "
                           f"result ({last})") from None
    if proc.returncode == MISSING_RUNTIME and "missing" in doc:
        raise UserError(f"device {dev.ssh}: {', '.join(doc['missing'])} missing for "
                        f"`{dev.python}`; run `{dev.python} -m {doc['install']}` there")
    if proc.returncode != 0:
        raise RuntimeError(f"device {dev.ssh}: {doc.get('error', last)}")
    return dict(doc)
