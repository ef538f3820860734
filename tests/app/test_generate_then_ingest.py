"""What a new user types: ``tandem generate --out D && tandem ingest D`` (issue 17, item 3).

Before: a traceback (``ValueError: 'clinic_id' is not in list`` in ``resolve_contract``, on
the generator's own ``data_contracts/clinics/*.yaml``) and nothing loaded. Now the files
that are not deliveries are listed as skipped with a reason, and the deliveries load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _tandem(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", *args], cwd=home.parent,
                          env=env, capture_output=True, text=True, timeout=900)


def test_generate_out_then_ingest_the_folder(tmp_path):
    home, d = tmp_path / "home", tmp_path / "D"
    gen = _tandem(home, "generate", "--out", str(d), "--clinics", "3", "--clients-per-clinic",
                  "4", "--clean", "--quiet", "--workers", "1")
    assert gen.returncode == 0, gen.stderr
    # the clinics' contracts are not installed yet (generate installs them only for its
    # default --out): every delivery fails alone with its reason, nothing crashes
    first = _tandem(home, "ingest", "--quiet", str(d))
    out = first.stdout + first.stderr
    assert first.returncode == 3, out
    assert "Traceback" not in out and "is not in list" not in out
    assert "Skipped 5 paths that are not a delivery" in out
    for name in ("manifest.json", "truth_episodes.parquet", "northside.yaml"):
        assert name in out
    # with the contracts installed, the same command loads every delivery
    contracts = home / "data_contracts" / "clinics"
    for p in (d / "data_contracts" / "clinics").glob("*.yaml"):
        shutil.copyfile(p, contracts / p.name)
    second = _tandem(home, "ingest", str(d))
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "loaded" in out and "Traceback" not in out
