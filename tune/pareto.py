"""Pareto front of Dice (maximise) against cost (minimise), and its MLflow table and plot."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrialPoint:
    """One finished trial as the front sees it."""

    trial_id: str
    dice: float  # best validation Dice the trial reached
    cost: float  # the cost objective (params, FLOPs or latency)
    config: dict[str, Any]  # the sampled dotted keys


def pareto_front(points: list[TrialPoint]) -> list[TrialPoint]:
    """The points no other point dominates (higher-or-equal Dice and lower-or-equal cost,
    one of them strictly), sorted by cost."""

    def dominated(p: TrialPoint) -> bool:
        return any(
            q.dice >= p.dice and q.cost <= p.cost and (q.dice > p.dice or q.cost < p.cost)
            for q in points
        )

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p.cost, -p.dice))


def choose(front: list[TrialPoint], max_cost: float | None = None) -> TrialPoint:
    """The best-Dice point of the front, among those within `max_cost` when given."""
    if not front:
        raise ValueError("the Pareto front is empty: no trial reported val_dice")
    fitting = [p for p in front if max_cost is None or p.cost <= max_cost]
    if not fitting:
        cheapest = min(p.cost for p in front)
        raise ValueError(f"no front point costs <= {max_cost}; the cheapest costs {cheapest}")
    return max(fitting, key=lambda p: (p.dice, -p.cost))


def front_table(points: list[TrialPoint], front: list[TrialPoint], cost_name: str) -> dict:
    """Column-oriented table of all trials with an `on_front` flag (for `mlflow.log_table`)."""
    on_front = {p.trial_id for p in front}
    keys = sorted({k for p in points for k in p.config})
    table: dict[str, list[Any]] = {"trial_id": [], "val_dice": [], cost_name: [], "on_front": []}
    table.update({k: [] for k in keys})
    for p in sorted(points, key=lambda p: p.cost):
        table["trial_id"].append(p.trial_id)
        table["val_dice"].append(p.dice)
        table[cost_name].append(p.cost)
        table["on_front"].append(p.trial_id in on_front)
        for k in keys:
            value = p.config.get(k)
            table[k].append(value if isinstance(value, int | float | bool) else str(value))
    return table


def log_front(
    uri: str, run_id: str, points: list[TrialPoint], front: list[TrialPoint], cost_name: str
) -> None:
    """Log the table (`pareto_front.json`) and a plot (`pareto_front.png`) to `run_id`."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.log_table(run_id, front_table(points, front, cost_name), "pareto_front.json")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p.cost for p in points], [p.dice for p in points], c="0.7", label="trials")
    ax.plot([p.cost for p in front], [p.dice for p in front], "o-", c="C3", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(cost_name)
    ax.set_ylabel("best val Dice")
    ax.legend()
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pareto_front.png"
        fig.savefig(path, dpi=100)
        client.log_artifact(run_id, str(path))
    plt.close(fig)
