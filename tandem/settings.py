"""One settings object, read from the environment (prefix ``TANDEM_``).

Defaults run embedded on a laptop: everything the pipeline keeps lives under
``TANDEM_HOME`` (default ``./tandem-data`` in the working directory).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / "tandem-data")
    contracts_dir: Path = REPO_ROOT / "data_contracts"
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

    @cached_property
    def home_dir(self) -> Path:
        return self.home.resolve()

    @property
    def warehouse_path(self) -> Path:
        return self.home_dir / "warehouse.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.home_dir / "warehouse.lock"

    @property
    def published_dir(self) -> Path:
        return self.home_dir / "published"

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
        """Site-specific contracts (e.g. written by `tandem generate`), beside the repo's."""
        return self.home_dir / "data_contracts"

    @property
    def prefect_home(self) -> Path:
        return self.home_dir / "prefect"

    def ensure_dirs(self) -> None:
        for d in (
            self.home_dir,
            self.published_dir,
            self.inbox_dir,
            self.received_dir,
            self.validation_dir,
            self.secrets_dir,
            self.local_contracts_dir / "clinics",
        ):
            d.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
