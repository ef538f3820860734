"""``tandem worker``: a Prefect worker of Tandem's work pool (the scaled-out topology).

``tandem serve --work-pool tandem`` registers the deployments with a ``process`` work pool
instead of running them itself; any number of ``tandem worker`` processes, on any machine that
reaches the Prefect server (``PREFECT_API_URL``), the lake (``TANDEM_CATALOG_URL``,
``TANDEM_DATA_PATH``) and a shared ``TANDEM_HOME``, pick their runs up (docs/scaling.md).
The command becomes the worker (``exec``): no process of it outlives what a service manager
stops.
"""

from __future__ import annotations

from typing import Annotated

import typer

DEFAULT_POOL = "tandem"


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """The worker's environment: the library defaults, then what a worker needs."""
    from flows.deployments import HEARTBEAT_SECONDS
    from tandem.core.runtime import library_defaults
    from tandem.core.settings import get_settings

    settings = get_settings()
    env = {**library_defaults(settings), **environ}
    env.update({
        "TANDEM_HOME": str(settings.home_dir),
        "PREFECT_LOGGING_LEVEL": settings.serve_log_level,
        # Look for scheduled runs every second (Prefect's default: 10 s of latency).
        "PREFECT_WORKER_QUERY_SECONDS": environ.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
        # Flow runs send heartbeats: one whose worker vanished is marked crashed.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        "PYTHONSAFEPATH": "1",
    })
    return env


def worker_command(
    pool: Annotated[str, typer.Option(
        help="The work pool (tandem serve --work-pool).", metavar="POOL")] = DEFAULT_POOL,
    limit: Annotated[int, typer.Option(
        min=1, help="Flow runs this worker runs at once.", metavar="N")] = 2,
    name: Annotated[str | None, typer.Option(
        help="This worker's name (default: Prefect's).", metavar="NAME")] = None,
) -> None:
    """Run flow runs of Tandem's work pool on this machine (needs PREFECT_API_URL)."""
    import os
    import sys

    if not os.environ.get("PREFECT_API_URL"):
        from tandem.app.clikit import EXIT_USAGE, Failure

        raise Failure("tandem worker needs PREFECT_API_URL: the Prefect server whose work "
                      "pool it serves (tandem serve prints it).", EXIT_USAGE)
    from tandem.core.settings import get_settings

    os.chdir(get_settings().home_dir)
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
           "--type", "process", "--limit", str(limit)]
    if name:
        cmd += ["--name", name]
    os.execve(sys.executable, cmd, worker_env(dict(os.environ)))
