"""The repairs as Prefect flows and deployments (what the dashboard asks the service for)."""

from __future__ import annotations

from tandem.core import warehouse
from tests.conftest import CLINIC_CONTRACT, HEADER, canonical_rows


def test_repair_deployments_are_registered():
    from flows.deployments import deployment_specs

    names = {(fl.name, kw["name"]) for fl, kw in deployment_specs()}
    assert {("reprocess", "manual"), ("republish", "manual")} <= names


def test_reprocess_flow_loads_the_fixed_rows(prefect_server, tandem_home, tmp_path):
    from flows.ingest import ingest
    from flows.repair import reprocess_flow

    path = tmp_path / "late.csv"
    path.write_text(HEADER + canonical_rows("B", "T05", "2026-01-06", 1, "ORS", [4, 4, 4, 4]))
    [batch] = ingest([str(path)])
    assert batch["rows_quarantined"] == 4
    (tandem_home.local_contracts_dir / "clinics" / "northside.yaml").write_text(
        CLINIC_CONTRACT.replace("[T01, T02]", "[T01, T02, T05]"))
    [done] = reprocess_flow(clinics=["northside"], requested_by="quality-lead")
    assert (done["status"], done["rows_loaded"]) == ("reprocessed", 4)
    with warehouse.reader(tandem_home) as con:
        assert con.execute("SELECT trigger, flow_run_id IS NOT NULL FROM batch WHERE "
                           "batch_id = ?", [done["batch_id"]]).fetchone() == ("reprocess", True)
    assert reprocess_flow() == []  # resolved once: a second run has nothing to do
