"""The benchmark scenarios: each returns the StepResults of its baseline(s) and Tandem.

A scenario is ``fn(ctx) -> list[StepResult]``. Every step runs as a child process timed
from outside (benchmarks/harness.py); a step that fails is reported with its error and
the scenario's other steps still run.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import StepResult


@dataclass
class Context:
    """What every scenario gets: the size, repeats, and where to work."""

    size: str
    repeat: int
    workdir: Path  # scratch for this run (warehouses, logs); removed afterwards
    timeout: float | None = None  # per step run, seconds
    quick: bool = False  # skip the temporary-server variant of tandem ingest
    smoke: bool = False  # the CI run: also skip process_file without Prefect
    prefect_home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        # One Prefect home per run, migrated once: a production install has a migrated
        # Prefect database; a fresh one per repeat would time its migrations instead.
        self.prefect_home = self.workdir / "prefect-home"
        self.prefect_home.mkdir(parents=True, exist_ok=True)

    @property
    def logdir(self) -> Path:
        return self.workdir / "logs"

    def base_env(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # Under load the temporary server can take longer than Prefect's 20 s default.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
            "GX_ANALYTICS_ENABLED": "false",
            "TANDEM_PSEUDONYM_KEY": "bench-only-key",
        }

    def fresh_home(self, name: str, contracts: Path) -> dict[str, str]:
        """An empty TANDEM_HOME with the data set's clinic contracts; returns the env."""
        home = self.workdir / "homes" / name
        shutil.rmtree(home, ignore_errors=True)
        (home / "data_contracts" / "clinics").mkdir(parents=True)
        for c in sorted(contracts.glob("*.yaml")):
            shutil.copyfile(c, home / "data_contracts" / "clinics" / c.name)
        return {**self.base_env(), "TANDEM_HOME": str(home)}

    def drop_homes(self) -> None:
        shutil.rmtree(self.workdir / "homes", ignore_errors=True)


Scenario = Callable[[Context], list[StepResult]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_count() -> int:
    return os.cpu_count() or 1


def registry() -> dict[str, Scenario]:
    """Scenario name -> function, in report order."""
    from benchmarks.scenarios import external, ingest

    return {
        "ingest": ingest.ingest_single,
        "backfill": ingest.backfill,
        "aggregate": external.aggregate,
        "scaling": external.scaling,
        "dashboard": external.dashboard,
        "latency": external.latency,
        "generate": external.generate,
        "cli_ingest": external.cli_ingest,
    }


# Which scenarios a size runs by default (the table: back-fill, dashboard and
# latency are specified at 1 M; ingest, aggregate and generate also at 10 M).
DEFAULT_SCENARIOS = {
    "small": ["ingest", "backfill", "aggregate", "scaling", "dashboard", "latency", "generate",
              "cli_ingest"],
    "reference": ["ingest", "backfill", "aggregate", "scaling", "dashboard", "latency",
                  "generate", "cli_ingest"],
    "large": ["ingest", "aggregate", "generate"],
}
