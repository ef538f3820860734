"""The batch endpoint: clinics that push post a file; it is received like an inbox drop.

``POST /v1/clinics/{clinic_id}/batches?filename=<name>`` with the file as the raw body and
``Authorization: Bearer <token>``. Each clinic has its own token (``tandem tokens issue``);
only a SHA-256 of it is kept, in ``TANDEM_HOME/secrets/api_tokens.json`` (tokens are 256
random bits, so a fast hash is as safe as a slow one and costs nothing per request). A
token opens exactly one clinic: clinic A's token cannot post for clinic B. The body is
written atomically into intake under a sanitised name (no path from the request reaches
the file system), then the same ``tandem.file.received`` event as an inbox drop is sent.

Run with ``python -m tandem.app.api --port N`` (``tandem serve`` does); it listens on
loopback only unless told otherwise: put a TLS-terminating proxy in front to expose it.
"""

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from tandem.core.settings import Settings, get_settings
from tandem.pipeline import intake

TOKENS_FILE = "api_tokens.json"


def _tokens_path(settings: Settings) -> Path:
    return settings.secrets_dir / TOKENS_FILE


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_tokens(settings: Settings) -> dict[str, dict[str, Any]]:
    path = _tokens_path(settings)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _save_tokens(settings: Settings, tokens: dict[str, dict[str, Any]]) -> None:
    settings.secrets_dir.mkdir(parents=True, exist_ok=True)
    path = _tokens_path(settings)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(tokens, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def issue_token(settings: Settings, clinic_id: str) -> str:
    """A new token for a clinic (replacing any old one). Shown once; only its hash is kept."""
    if not intake.valid_clinic_id(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    token = f"tdm_{secrets.token_urlsafe(32)}"
    tokens = load_tokens(settings)
    tokens[clinic_id] = {"sha256": _digest(token),
                         "issued_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _save_tokens(settings, tokens)
    return token


def revoke_token(settings: Settings, clinic_id: str) -> bool:
    tokens = load_tokens(settings)
    if tokens.pop(clinic_id, None) is None:
        return False
    _save_tokens(settings, tokens)
    return True


def verify_token(settings: Settings, clinic_id: str, token: str | None) -> bool:
    """True only for this clinic's current token (constant-time comparison)."""
    entry = load_tokens(settings).get(clinic_id)
    if not entry or not token:
        return False
    return hmac.compare_digest(entry["sha256"], _digest(token))


def create_app(settings: Settings | None = None):
    """The FastAPI app (a factory, so tests and `tandem serve` choose the settings)."""
    import anyio
    from fastapi import FastAPI, HTTPException, Request, status

    from flows.events import emit_file_received

    settings = settings or get_settings()
    app = FastAPI(title="Tandem batch endpoint", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/clinics/{clinic_id}/batches", status_code=status.HTTP_202_ACCEPTED)
    async def post_batch(clinic_id: str, request: Request, filename: str | None = None) -> dict:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not intake.valid_clinic_id(clinic_id) or not verify_token(settings, clinic_id, token):
            # Same answer for an unknown clinic and a wrong token: no probing for clinics.
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid token for this clinic",
                                headers={"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.api_max_bytes:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "batch too large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.api_max_bytes:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "batch too large")
            chunks.append(chunk)
        if size == 0:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "empty body")
        name = intake.safe_filename(
            filename or request.headers.get("x-filename"),
            default=f"api-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.csv",
        )
        landed = await anyio.to_thread.run_sync(
            intake.receive_bytes, settings, clinic_id, name, b"".join(chunks), "api")
        emitted = emit_file_received(clinic_id, str(landed.path), landed.source_name,
                                     landed.sha256, landed.size_bytes, "api")
        return {"clinic_id": clinic_id, "file": landed.source_name, "sha256": landed.sha256,
                "size_bytes": landed.size_bytes, "event_emitted": emitted}

    return app


def main() -> None:
    import argparse

    import uvicorn

    from tandem.core.runtime import prepare_environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    prepare_environment()
    try:  # uvicorn stops gracefully on SIGTERM / Ctrl+C
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    finally:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)


if __name__ == "__main__":  # pragma: no cover
    main()
