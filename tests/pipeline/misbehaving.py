"""Readers that misbehave on purpose, importable by the reader worker (tests only).

``read_stored`` stands in for tandem.pipeline.sources.isolated.read_stored: it raises,
panics, aborts or hangs when the file's name says so, and reads normally otherwise.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time


class FakePanic(BaseException):
    """pyo3's PanicException derives from BaseException, not Exception."""


def read_stored(path: str, contract, source_name: str):
    if "raises" in source_name:
        raise ValueError("could not parse 'Jane Doe, 1980-02-03' as a score")
    if "panics" in source_name:
        raise FakePanic("byte array offset overflow near 'Jane Doe'")
    if "aborts" in source_name:
        os.abort()
    if "hangs" in source_name:
        time.sleep(60)
    from tandem.pipeline.sources.isolated import read_stored as real

    return real(path, contract, source_name)


def frame(rows: int = 3, cols: int = 2):
    import polars as pl

    return pl.DataFrame({f"c{j}": [f"v{i}_{j}" for i in range(rows)] for j in range(cols)})


def frame_with_notes():
    return frame(), ["ignored sheet 'notes' (not a period sheet)"]


def pid() -> int:
    return os.getpid()


def raises_with_contents():
    raise ValueError("could not parse 'Jane Doe, 1980-02-03' as a score")


def panics():
    raise FakePanic("byte array offset overflow near 'Jane Doe'")


def aborts():
    os.abort()


def segfaults():
    ctypes.string_at(0)


def killed():
    os.kill(os.getpid(), signal.SIGKILL)


def allocates(n_bytes: int) -> int:
    return len(bytearray(n_bytes))  # MemoryError under RLIMIT_AS


def sleeps(seconds: float, pid_file: str | None = None) -> float:
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(seconds)
    return seconds


def read_excel(data: bytes):
    """What the Excel reader does per sheet, without the guard or a contract."""
    import fastexcel

    book = fastexcel.read_excel(data)
    return book.load_sheet(book.sheet_names[0], header_row=None, dtypes="string").to_polars()
