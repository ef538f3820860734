"""Read a kept file with its contract's reader in the ingest process's reader worker.

:func:`read_isolated` is what the ingest calls: the reader runs in the one worker process
of :mod:`tandem.pipeline.isolation`, on the kept copy (``received/<clinic>/<sha256>.<ext>``,
the exact bytes that were hashed; its path travels to the worker, not the bytes). Every
way a read can end badly becomes :class:`ReadFailed` with a sentence that names no file
contents: a ``SourceError`` keeps its own (written to be shown), any other exception is
named by its type, a crash by its signal, a memory-cap hit by the size asked for, a hang by
the time limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from tandem.core.contracts import ClinicContract
from tandem.core.safe_files import read_regular
from tandem.core.settings import Settings
from tandem.pipeline.isolation import ReaderFailed, WorkerConfig, shared_run
from tandem.pipeline.sources import SourceError, reader_for, split_notes

_SOURCE_ERROR = f"{SourceError.__module__}.{SourceError.__qualname__}"


class ReadFailed(Exception):
    """The file could not be read; ``str()`` is a reason for the batch (no contents)."""


def read_stored(path: str, contract: ClinicContract,
                source_name: str) -> pl.DataFrame | tuple[pl.DataFrame, list[str]]:
    """In the worker: the kept file's canonical rows (and notes) under its contract."""
    return reader_for(contract.format)(read_regular(path), contract, source_name)


def memory_limit(settings: Settings) -> int:
    """The worker's address-space cap in bytes: ``TANDEM_READER_MEMORY_MB``, or (0) half
    the machine's memory, at least 4 GiB and at most 16 GiB. An idle worker that has used
    Polars already maps about 1 GiB of address space (threads, allocator arenas)."""
    if settings.reader_memory_mb > 0:
        return settings.reader_memory_mb << 20
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return max(4 << 30, min(16 << 30, total // 2))


def read_isolated(path: Path, contract: ClinicContract, source_name: str,
                  settings: Settings) -> tuple[pl.DataFrame, list[str]]:
    """The canonical rows and notes of the kept file at ``path``; :class:`SourceError` when
    the reader refuses the file, :class:`ReadFailed` for anything else that went wrong."""
    if not settings.isolate_readers:
        return split_notes(read_stored(str(path), contract, source_name))
    config = WorkerConfig(memory_limit=memory_limit(settings), safe_exceptions=(SourceError,))
    try:
        result = shared_run(config, settings.reader_timeout_seconds, read_stored, str(path),
                            contract, source_name)
    except ReaderFailed as exc:
        if exc.kind == "exception" and exc.exc_type == _SOURCE_ERROR:
            raise SourceError(str(exc)) from None
        raise ReadFailed(f"{source_name} cannot be read under the clinic's {contract.format} "
                         f"contract: {exc}") from None
    frame, notes = split_notes(result)
    if not isinstance(frame, pl.DataFrame) or not all(isinstance(n, str) for n in notes):
        raise ReadFailed(f"{source_name}: the reader returned something other than rows")
    return frame, notes
