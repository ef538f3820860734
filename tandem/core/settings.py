"""The one settings object, read from the environment (prefix ``TANDEM_``).

Defaults run embedded on a laptop: everything the pipeline keeps lives under
``TANDEM_HOME`` (default ``./tandem-data`` in the working directory). Every knob of every
floor is a field here (storage, science parameters, the served pipeline's timing and
schedules), so ``Settings()`` is the whole configuration and ``docs/operations.md`` lists it.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def shipped_contracts_dir() -> Path:
    """The instruments, rules and mart contracts shipped with Tandem (package data of the
    ``data_contracts`` package), wherever Tandem is installed.

    A folder named ``data_contracts`` in the working directory (a site's, or a generated data
    set's) would be found first as a namespace package and hide the shipped one, so every
    import finder is asked for the *regular* package, the one with an ``__init__.py``."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find("data_contracts", None) if find else None
        if spec is not None and spec.origin and spec.submodule_search_locations:
            location = Path(next(iter(spec.submodule_search_locations)))
            if (location / "rules.yaml").is_file():
                return location
    raise RuntimeError("Tandem's shipped data_contracts (rules.yaml) cannot be found")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "tandem"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / "tandem-data")
    # The shipped definitions; a site's own live in TANDEM_HOME/data_contracts/.
    contracts_dir: Path = Field(default_factory=shipped_contracts_dir)
    # --- the warehouse: a DuckLake (docs/warehouse.md, docs/scaling.md) -------------------
    # Its catalog: unset = a SQLite file under TANDEM_HOME/lake/; scaled out, a PostgreSQL
    # server: postgresql://user@host:port/db (the password from PGPASSWORD or ~/.pgpass).
    catalog_url: str | None = Field(default=None, repr=False)
    # Where its Parquet data files live: unset = TANDEM_HOME/lake/data/; scaled out, a path
    # every machine reaches (a shared file system, or s3://... through DuckDB's httpfs).
    data_path: str | None = None
    # Data files encrypted with DuckLake's own encryption (its keys live in the catalog).
    lake_encrypted: bool = True
    # Snapshots (time travel) kept this many days; the published ones readers use are kept.
    snapshot_retention_days: int = 30
    # Clinics whose client state the aggregate computes at once (threads; the flow's task
    # runner decides where a served aggregate runs them).
    aggregate_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1))
    # Where DuckDB's extensions are installed once (shared by every TANDEM_HOME of a user).
    extension_dir: Path = Field(default_factory=lambda: _cache_dir() / "duckdb-extensions")
    # Secret key for client pseudonyms. When unset, a key is made once and kept in
    # TANDEM_HOME/secrets/pseudonym.key (outside the warehouse file, never in the repo).
    pseudonym_key: str | None = Field(default=None, repr=False)
    # Cells with fewer clients than this are suppressed on every director-facing mart.
    min_cell_size: int = 10
    # Sessions further apart than this many days start a new episode of care.
    episode_gap_days: int = 90
    # An episode with no session for this many days is considered closed.
    episode_open_days: int = 60
    dashboard_port: int = 8501

    # --- the served pipeline (tandem serve): timing; defaults suit production ---------
    # A file counts as complete once its size and mtime are unchanged this long.
    inbox_stable_seconds: float = 1.0
    # An ingest run keeps claiming newly received files of its clinic this long; events
    # inside the window start no new run (the trigger's `within`).
    ingest_window_seconds: float = 60.0
    # Same for aggregate: one run per window re-publishes while batches keep landing.
    aggregate_window_seconds: float = 60.0
    # Re-publish once no batch has landed for this long ...
    aggregate_quiet_seconds: float = 3.0
    # ... or at the latest this long after the previous publish, during a long burst.
    aggregate_max_wait_seconds: float = 120.0
    # Largest batch the endpoint accepts.
    api_max_bytes: int = 200 * 1024 * 1024
    # A file still waiting in intake/pending this long after its last event gets the
    # event again from the watcher (the event was lost: the Prefect server restarted, or
    # its run crashed and put the file back). Claims are atomic, so an extra event is
    # harmless; keep it above the ingest window.
    intake_retry_seconds: float = 120.0
    # Log level of the served flows (their logs reach the Prefect UI).
    serve_log_level: str = "INFO"
    # When the scheduled flows run (cron, in this time zone).
    sweep_cron: str = "0 2 * * *"
    quality_cron: str = "0 7 * * *"
    timezone: str = "Europe/London"

    # --- hostile input, raw-file retention, dashboard sign-in (docs/security.md) -------
    # Kept raw files (received/, intake/done/) are deleted this many days after their
    # bytes last arrived (the nightly sweep and `tandem purge`); 0 keeps them for ever.
    # Batch records (hashes, names, outcomes) are never purged: exactly-once and lineage
    # need them, not the bytes.
    received_retention_days: int = 90
    # Readers run in a worker process (a file that crashes its parser fails alone).
    isolate_readers: bool = True
    # The reader worker's address-space cap; 0: half the machine's memory (4 to 16 GiB).
    reader_memory_mb: int = 0
    # A read taking longer than this is stopped and its file fails.
    reader_timeout_seconds: float = 900.0
    # A dashboard sign-in lasts this long (an HttpOnly cookie kept across reloads).
    dashboard_session_hours: float = 8.0

    # --- where people look, and who is told (issue 18) ---------------------------------
    # The dashboard listens on this address only (loopback); set e.g. 0.0.0.0 to serve
    # other machines, behind a TLS proxy (docs/security.md).
    dashboard_address: str = "127.0.0.1"
    # Notifications, sent by Prefect automations that `tandem serve` keeps in step with
    # these settings. E-mail (SMTP): recipients, comma-separated; none: no e-mail.
    notify_email_to: str = ""
    notify_email_from: str = "tandem@localhost"
    notify_smtp_host: str = "localhost"
    notify_smtp_port: int = 587
    # starttls (port 587), ssl (implicit TLS, port 465) or none (a relay on this machine).
    notify_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    notify_smtp_user: str = ""
    notify_smtp_password: str | None = Field(default=None, repr=False)
    # A Slack-compatible incoming webhook (JSON {"text": ...}); none: no webhook.
    notify_webhook_url: str | None = Field(default=None, repr=False)
    # Tell when a clinic has sent nothing for this many days (checked daily with the
    # quality summary, at TANDEM_QUALITY_CRON).
    notify_silent_days: float = 7.0
    # Tell when new batches are not in the published marts this long after they landed.
    notify_marts_late_minutes: float = 30.0
    # Tell when a file's quarantined share is above its clinic's usual (the median of its
    # last TANDEM_NOTIFY_QUARANTINE_HISTORY loaded files) times this factor, and at
    # least TANDEM_NOTIFY_QUARANTINE_MARGIN above it.
    notify_quarantine_factor: float = 2.0
    notify_quarantine_margin: float = 0.05
    notify_quarantine_history: int = 20

    @property
    def notify_email_recipients(self) -> list[str]:
        return [a.strip() for a in self.notify_email_to.split(",") if a.strip()]

    @cached_property
    def home_dir(self) -> Path:
        return self.home.resolve()

    @property
    def lake_dir(self) -> Path:
        """The embedded lake: its SQLite catalog and (unless TANDEM_DATA_PATH) its data."""
        return self.home_dir / "lake"

    @property
    def legacy_warehouse_path(self) -> Path:
        """Where Tandem 0.1 (schema v2) kept its warehouse: ``tandem migrate`` reads it."""
        return self.home_dir / "warehouse.duckdb"

    @property
    def inbox_dir(self) -> Path:
        return self.home_dir / "inbox"

    @property
    def received_dir(self) -> Path:
        """Where every received file is kept, by content hash, for re-runs and audit."""
        return self.home_dir / "received"

    @property
    def validation_dir(self) -> Path:
        return self.home_dir / "validation"

    @property
    def secrets_dir(self) -> Path:
        return self.home_dir / "secrets"

    @property
    def local_contracts_dir(self) -> Path:
        """Site-specific contracts (e.g. written by `tandem generate`), beside the shipped ones."""
        return self.home_dir / "data_contracts"

    @property
    def rules_path(self) -> Path:
        """The row rules every clinic's data contract is built from."""
        return self.contracts_dir / "rules.yaml"

    @property
    def prefect_home(self) -> Path:
        return self.home_dir / "prefect"

    @property
    def audit_dir(self) -> Path:
        """Append-only records of who saw what (access.jsonl) and what was purged."""
        return self.home_dir / "audit"

    def ensure_dirs(self) -> None:
        """Make TANDEM_HOME's folders, private to the service user (0700)."""
        for d in (
            self.home_dir,
            self.lake_dir,
            self.inbox_dir,
            self.received_dir,
            self.validation_dir,
            self.secrets_dir,
            self.local_contracts_dir / "clinics",
        ):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
