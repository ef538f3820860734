"""Notifications: Prefect automations that turn Tandem's events into e-mails and webhook posts.

What is told, and the event that tells it (flows/alerts.py and flows/events.py send them):

==========================  ===================================  ===============================
rule                        event                                sent by
==========================  ===================================  ===============================
a file failed               ``tandem.batch.failed``              every ingest (flow or CLI)
quarantine above usual      ``tandem.quality.quarantine-high``   every ingest, after the load
a clinic is silent          ``tandem.clinic.silent``             the daily quality summary
marts not published         ``tandem.marts.late``                the inbox watcher
the daily quality summary   ``tandem.quality.summary``           the daily quality summary
==========================  ===================================  ===============================

Each rule is one automation (reactive, one event is one message) whose actions send the
message to every destination configured in the settings: e-mail over SMTP and a
Slack-compatible webhook (JSON ``{"text": ...}``). The Prefect server renders the Jinja
templates and delivers, so nothing of Tandem needs to run for a message to go out.

Delivery uses blocks built into Prefect 3.8.8, so a stock server (ours or an external one)
can load them: ``CustomWebhookNotificationBlock`` for the webhook (its URL kept among the
block's secrets), and for e-mail an Apprise ``mailto://`` URL (SMTP host, port, TLS mode,
login, sender and recipients) held by the core ``SlackWebhook`` block, whose non-Slack URLs
go to Apprise (Prefect has no SMTP notification block of its own).
:func:`sync_automations`, run when the deployments start, makes the blocks and automations
match the settings: it replaces every automation whose name starts with
:data:`AUTOMATION_PREFIX` and removes the blocks of destinations no longer configured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from flows.alerts import CLINIC_SILENT, MARTS_LATE, QUALITY_SUMMARY, QUARANTINE_HIGH
from flows.events import BATCH_PREFIX, LABEL_CLINIC
from tandem.core.settings import Settings

log = logging.getLogger(__name__)

AUTOMATION_PREFIX = "tandem-notify: "
EMAIL_BLOCK = "tandem-email"
WEBHOOK_BLOCK = "tandem-webhook"

_CLINIC = "event.resource['" + LABEL_CLINIC + "']"


@dataclass(frozen=True)
class Rule:
    name: str
    event: str
    subject: str  # Jinja, rendered by the Prefect server
    body: str


RULES = (
    Rule("a file failed", BATCH_PREFIX + "failed",
         "Tandem: {{ event.payload.source_name }} from {{ " + _CLINIC + " }} failed",
         "The file {{ event.payload.source_name }} from clinic {{ " + _CLINIC + " }} failed "
         "and was not loaded: {{ event.payload.reason }}.\n\n"
         "It is kept (batch {{ event.payload.batch_id }}) and is retried by the nightly "
         "sweep once the clinic's contract changes; a corrected file can simply be sent "
         "again. Received through {{ event.resource['tandem.trigger'] }} at "
         "{{ event.occurred }}."),
    Rule("quarantine above usual", QUARANTINE_HIGH,
         "Tandem: {{ event.payload.rate_percent }}% of {{ event.payload.source_name }} "
         "quarantined",
         "{{ event.payload.rows_quarantined }} of the {{ event.payload.rows_received }} rows "
         "of {{ event.payload.source_name }} from clinic {{ " + _CLINIC + " }} were "
         "quarantined ({{ event.payload.rate_percent }}%), against a usual "
         "{{ event.payload.usual_percent }}% for this clinic. The good rows are loaded "
         "(batch {{ event.payload.batch_id }}); the quality pages of the dashboard list the "
         "rows set aside and why."),
    Rule("a clinic is silent", CLINIC_SILENT,
         "Tandem: nothing from {{ event.payload.clinic_name }} for "
         "{{ event.payload.days_silent }} days",
         "{% if event.payload.never_sent %}Clinic {{ event.payload.clinic_name }} "
         "({{ " + _CLINIC + " }}) has not sent any file since its contract started "
         "{{ event.payload.days_silent }} days ago.{% else %}Clinic "
         "{{ event.payload.clinic_name }} ({{ " + _CLINIC + " }}) has sent nothing for "
         "{{ event.payload.days_silent }} days; its last file arrived at "
         "{{ event.payload.last_received_at }}.{% endif %} Check its export or its "
         "delivery to the inbox or the batch endpoint."),
    Rule("marts not published", MARTS_LATE,
         "Tandem: the dashboard lags behind new data",
         "Batches up to {{ event.payload.last_batch_id }} are in the warehouse, but the "
         "published marts (what the dashboard shows) stop at batch "
         "{{ event.payload.published_batch_id }}, and have for "
         "{{ event.payload.minutes }} minutes. Look for failed or waiting "
         "aggregate-on-batches runs in the Prefect UI, or publish now with "
         "`tandem aggregate`."),
    Rule("daily quality summary", QUALITY_SUMMARY,
         "Tandem quality summary: {{ event.payload.batches }} "
         "file{{ '' if event.payload.batches == 1 else 's' }} received, "
         "{{ event.payload.failed }} failed",
         "{{ event.payload.text }}\n(The report is also in {{ event.payload.report }}.)"),
)


def email_url(settings: Settings) -> str | None:
    """The Apprise ``mailto://`` URL for the settings' SMTP server and recipients."""
    to = settings.notify_email_recipients
    if not to:
        return None
    secure = settings.notify_smtp_security != "none"
    login = ""
    if settings.notify_smtp_user:
        login = quote(settings.notify_smtp_user, safe="")
        if settings.notify_smtp_password:
            login += ":" + quote(settings.notify_smtp_password, safe="")
        login += "@"
    query = {"smtp": settings.notify_smtp_host, "from": settings.notify_email_from,
             "to": ",".join(to), "name": "Tandem", "format": "text"}
    if secure:
        query["mode"] = settings.notify_smtp_security
    return (f"{'mailtos' if secure else 'mailto'}://{login}{settings.notify_smtp_host}:"
            f"{settings.notify_smtp_port}?{urlencode(query, safe='@,')}")


def destinations(settings: Settings) -> list[str]:
    """The configured destinations, for people (no secrets)."""
    out = []
    if settings.notify_email_recipients:
        out.append(f"e-mail to {', '.join(settings.notify_email_recipients)} via "
                   f"{settings.notify_smtp_host}:{settings.notify_smtp_port}")
    if settings.notify_webhook_url:
        out.append(f"webhook at {urlsplit(settings.notify_webhook_url).hostname}")
    return out


def _blocks(settings: Settings) -> dict[str, object]:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    blocks: dict[str, object] = {}
    url = email_url(settings)
    if url:
        blocks[EMAIL_BLOCK] = SlackWebhook(url=url, notify_type="info")
    if settings.notify_webhook_url:
        blocks[WEBHOOK_BLOCK] = CustomWebhookNotificationBlock(
            name="Tandem", url="{{webhook_url}}", method="POST",
            json_data={"text": "*{{subject}}*\n{{body}}"},
            secrets={"webhook_url": settings.notify_webhook_url})
    return blocks


def sync_automations(settings: Settings) -> int:
    """Make the notification blocks and automations match the settings (on the server
    PREFECT_API_URL names). Returns the number of automations now in place."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.exceptions import ObjectNotFound

    blocks = _blocks(settings)
    block_ids = {name: block.save(name, overwrite=True)  # type: ignore[attr-defined]
                 for name, block in blocks.items()}
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith(AUTOMATION_PREFIX):
                client.delete_automation(automation.id)
        for name, slug in ((EMAIL_BLOCK, "slack-webhook"), (WEBHOOK_BLOCK, "custom-webhook")):
            if name not in blocks:
                try:
                    doc = client.read_block_document_by_name(name, slug)
                    client.delete_block_document(doc.id)
                except ObjectNotFound:
                    pass
    if not block_ids:
        return 0
    for rule in RULES:
        Automation(
            name=AUTOMATION_PREFIX + rule.name,
            description=f"Tells {', '.join(destinations(settings))} when {rule.name} "
                        f"({rule.event}). Made by tandem serve from its settings.",
            trigger=EventTrigger(expect={rule.event}, posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(block_document_id=block_id, subject=rule.subject,
                                      body=rule.body)
                     for block_id in block_ids.values()],
        ).create()
    log.info("notification automations: %d rules to %s", len(RULES),
             ", ".join(destinations(settings)))
    return len(RULES)
