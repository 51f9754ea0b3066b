"""What model a remote (OpenAI-compatible) teacher really is, for the teacher's cache key.

A URL and a model name do not identify a model: a server can be restarted with other weights
under the same name. Before a build, `GET {base_url}/models` is asked for the entry of the
configured model (or, when the server does not list that name — llama-server serves whatever
it loaded under any name —, every entry it lists), minus the fields that change per request
or per restart (`created`, `permission`, `object`). That identity enters the teacher's key, and
is recorded per (base_url, model_name) in `build/cache/models/remote-teachers.json`: when it
changes the build says so and generates the teacher data again, or, with
`[teacher] pin_identity = true`, refuses. A server that does not answer `/models` keeps the
last recorded identity (said so); with none recorded, the key is the URL and name alone.

Example:
    python -c "from pipeline.generation.remote_identity import served_identity; \
        print(served_identity('http://127.0.0.1:8080/v1', 'qwen', None, 5.0))"
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

VOLATILE = {"created", "permission", "object"}  # per request (vLLM) or per restart
RECORD_FILE = "remote-teachers.json"


def served_identity(base_url: str, model_name: str, api_key_env: str | None,
                    timeout_s: float) -> dict[str, Any] | None:
    """The server's own description of the model it serves under model_name; None when it
    cannot be asked (unreachable, no /models endpoint, a body that is not the OpenAI list)."""
    import httpx

    key = os.environ.get(api_key_env, "") if api_key_env else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout_s)
        entries = resp.json()["data"] if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(entries, list):
        return None
    stable = [{k: v for k, v in e.items() if k not in VOLATILE} for e in entries if isinstance(e, dict)]
    named = [e for e in stable if e.get("id") == model_name]
    return named[0] if named else {"served": sorted(stable, key=lambda e: str(e.get("id")))}


def teacher_digest(base_url: str, model_name: str, identity: dict[str, Any] | None) -> str:
    blob = f"openai:{base_url}:{model_name}"
    if identity is not None:
        blob += ":" + json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def resolve_identity(base_url: str, model_name: str, api_key_env: str | None, timeout_s: float,
                     pinned: bool, models_dir: Path) -> tuple[str, str | None]:
    """(the teacher's digest, a line to tell the user or None). Records the identity seen."""
    record_file = models_dir / RECORD_FILE
    try:
        records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    except (OSError, ValueError):
        records = {}  # a damaged record only loses the "it changed" message
    slot = f"{base_url} {model_name}"
    before = records.get(slot)
    identity = served_identity(base_url, model_name, api_key_env, timeout_s)
    if identity is None:
        if before is None:
            return teacher_digest(base_url, model_name, None), (
                f"{base_url} did not describe its models (GET /models): the teacher is keyed "
                "by URL and model name only")
        return teacher_digest(base_url, model_name, before["identity"]), (
            f"{base_url} did not answer GET /models: using the model identity recorded "
            f"{before['seen']}")
    note = None
    if before is not None and before["identity"] != identity:
        if pinned:
            raise UserError(
                f"the teacher served at {base_url} as '{model_name}' changed since "
                f"{before['seen']} ({_short(before['identity'])} -> {_short(identity)}): "
                "serve the pinned model again, or set [teacher] pin_identity = false to "
                "generate the teacher data again")
        note = (f"the teacher served at {base_url} as '{model_name}' changed since "
                f"{before['seen']} ({_short(before['identity'])} -> {_short(identity)}): its "
                "data is generated again")
    if before is None or before["identity"] != identity:
        records[slot] = {"identity": identity, "seen": time.strftime("%Y-%m-%d %H:%M")}
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=2, sort_keys=True, default=str))
        os.replace(tmp, record_file)
    return teacher_digest(base_url, model_name, identity), note


def remote_teacher(base_url: str | list[str] | None, model_name: str, api_key_env: str | None,
                   timeout_s: float, pinned: bool, models_dir: Path) -> tuple[str, list[str]]:
    """(the digest of a remote teacher served at one endpoint or several, lines to tell the
    user). Several must serve the same model (their GET /models agree), else one line names
    the odd one."""
    from pipeline.generation.backends.openai import endpoints

    urls = endpoints(base_url)
    digests, notes = [], []
    for url in urls:
        digest, note = resolve_identity(url, model_name, api_key_env, timeout_s, pinned, models_dir)
        notes += [note] if note else []
        digests.append(digest)
    if len(urls) == 1:
        return digests[0], notes
    seen = {url: served_identity(url, model_name, api_key_env, timeout_s) for url in urls}
    known = [(url, ident) for url, ident in seen.items() if ident is not None]
    if odd := [url for url, ident in known if ident != known[0][1]]:
        raise UserError(f"teacher.base_url: {odd[0]} serves another model as '{model_name}' than "
                        f"{known[0][0]} ({_short(seen[odd[0]] or {})} vs {_short(known[0][1])}): "
                        "serve the same model on every endpoint")
    return hashlib.sha256(":".join(digests).encode()).hexdigest(), notes


def _short(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, default=str)[:120]
