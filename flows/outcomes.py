"""What the flows return: typed, so callers (the CLI, tests, a parent flow) read fields,
not string keys whose shapes differ by flow."""

from __future__ import annotations

from dataclasses import dataclass

from unetflow.promotion import PromotionDecision
from unetflow.training import TrainReport


@dataclass(frozen=True)
class TrainOutcome:
    """The `train` and `pipeline` flows' result."""

    report: TrainReport  # the MLflow run, registered version and test metrics
    data_version: str  # DVC md5 of the prepared data, or `folder-<hash>` of a raw folder
    reused: bool  # a cache hit: the same config and data were trained before
    champion_version: str | None  # read from the registry after the run (and promotion)
    promotion: PromotionDecision | None = None  # when the pipeline ran the promotion gate
