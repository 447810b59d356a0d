"""Flow runs whose process died (a killed worker, a lost machine) end CRASHED.

A SIGKILLed flow-run process reports nothing: without help its run stays RUNNING for
ever. Prefect 3.8 offers the parts, not the whole (Prefect's "detect zombie flows"
guide): each flow run emits a `prefect.flow-run.heartbeat` event every
`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (default 180, minimum 30), and a proactive
automation on the server marks a run CRASHED when its heartbeats stop. A self-hosted
server has no such automation: `unetflow deploy` (and `unetflow stack up`) create it,
and set the heartbeat frequency for every deployment's runs.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
HEARTBEAT_SECONDS = 30  # the least Prefect allows: a dead run is found soonest
MISSED_HEARTBEATS = 3  # one late heartbeat on a loaded machine is not a crash
AUTOMATION_NAME = "unetflow: crash flow runs without heartbeats"
TAG = "unetflow"  # the tag of every unetflow deployment (flows/deployments.py)
# A run ends with one of these events; after it, no heartbeat is expected.
END_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


def heartbeat_env() -> dict[str, str]:
    """The environment a deployment's flow runs get (the worker's job variables)."""
    return {HEARTBEAT_ENV: str(HEARTBEAT_SECONDS)}


def zombie_automation() -> Automation:
    """CRASHED for a unetflow flow run that missed `MISSED_HEARTBEATS` heartbeats.

    Only runs tagged `unetflow`: another flow on the same server may beat every 180 s
    (Prefect's default) and must not be crashed after our shorter window.
    """
    return Automation(
        name=AUTOMATION_NAME,
        description=f"a flow run tagged {TAG!r} that stops sending heartbeats died: "
        "mark it Crashed (rerun its deployment to resume from the last checkpoint)",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{e}" for e in END_EVENTS)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=HEARTBEAT_SECONDS * MISSED_HEARTBEATS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                message=f"no heartbeat for {HEARTBEAT_SECONDS * MISSED_HEARTBEATS} s: "
                "the flow-run process died",
            )
        ],
    )


def ensure_zombie_automation() -> None:
    """Create the automation on the server named by PREFECT_API_URL, or bring it up to
    date (a rerun of `unetflow deploy` leaves exactly one)."""
    wanted = zombie_automation()
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
    if not existing:
        wanted.create()
        print(f"created automation {AUTOMATION_NAME!r}")
        return
    wanted.id = existing[0].id
    wanted.update()
