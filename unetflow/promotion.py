"""Gated promotion and rollback of registered model versions.

A candidate replaces the champion only when, on the same frozen test split, the
bootstrap confidence interval of its paired per-image Dice gain lies above a margin.
The statistics (`paired_bootstrap`) are a pure function; `evaluate_and_promote` is
what the CLI and the Prefect flow call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from unetflow import evaluation, tracking
from unetflow.config import TrackingSettings
from unetflow.dvc_data import PREPARED
from unetflow.errors import UsageError

_HEADING = "## Promotion check"


@dataclass(frozen=True)
class BootstrapResult:
    """Mean paired difference (candidate - champion) and its percentile interval."""

    mean_diff: float
    ci_low: float
    ci_high: float
    n: int


def paired_bootstrap(
    candidate: np.ndarray,
    champion: np.ndarray,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap CI of the mean of per-image differences `candidate - champion`.

    Images are resampled as pairs (both models scored on the same image), so the
    interval reflects the gain, not the spread of image difficulty. Pairs with a NaN
    are dropped. Deterministic for a given `seed`.
    """
    a, b = np.asarray(candidate, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two equal-length 1-D arrays, got {a.shape} and {b.shape}")
    diffs = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if diffs.size == 0:
        raise ValueError("no image has a finite score for both models")
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return BootstrapResult(float(diffs.mean()), float(low), float(high), int(diffs.size))


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    candidate_version: str
    champion_version: str | None  # the champion before the decision (None: there was none)
    promoted: bool
    reason: str
    candidate_dice: float
    champion_dice: float | None = None
    bootstrap: BootstrapResult | None = None
    margin: float = TrackingSettings().margin
    min_dice: float = TrackingSettings().min_dice

    def summary(self) -> str:
        """One line: what happened to which version, and why."""
        verdict = "promoted to champion" if self.promoted else "not promoted"
        return f"{self.model_name} v{self.candidate_version} {verdict}: {self.reason}"

    def as_dict(self) -> dict:
        """Plain JSON-able values (Prefect results, artifacts)."""
        return asdict(self)

    def markdown(self) -> str:
        """The comparison table written to the candidate's description and artifacts."""
        rows = [
            ("decision", "promoted to champion" if self.promoted else "not promoted"),
            ("reason", self.reason),
            (f"candidate v{self.candidate_version} mean Dice", f"{self.candidate_dice:.4f}"),
        ]
        if self.champion_version is not None and self.champion_dice is not None:
            rows.append(
                (f"champion v{self.champion_version} mean Dice", f"{self.champion_dice:.4f}")
            )
        if self.bootstrap is not None:
            b = self.bootstrap
            rows += [
                ("paired Dice gain (mean)", f"{b.mean_diff:+.4f}"),
                ("95% bootstrap CI", f"[{b.ci_low:+.4f}, {b.ci_high:+.4f}]"),
                ("test images", str(b.n)),
            ]
        rows += [("margin", f"{self.margin}"), ("min Dice", f"{self.min_dice}")]
        body = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"| item | value |\n|---|---|\n{body}\n"


def _load_version(client: MlflowClient, name: str, version: str | None):
    if version is None:  # the newest registered version
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise UsageError(f"model {name!r} has no registered versions; train one first")
        return max(versions, key=lambda v: int(v.version))
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise UsageError(
            f"model {name!r} has no version {version!r}; list versions in the MLflow UI "
            "or pass --model with the registered model name"
        ) from None


def _score(name: str, version: str, data_dir: Path) -> list[dict[str, float | str]]:
    """Per-image test metrics of a registered version, through its served package."""
    python_model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    segmenter = python_model.segmenter
    prediction = evaluation.predict_split(segmenter, data_dir, "test")
    num_classes = 1 if segmenter.spec.mode == "binary" else segmenter.config.out_channels
    return evaluation.per_image_table(prediction, num_classes, metrics=("dice",))


@dataclass(frozen=True)
class _Scored:
    """A registered version's per-image test Dice."""

    version: str
    rows: list[dict[str, float | str]]

    @property
    def dice(self) -> float:
        return evaluation.mean_metric(self.rows)

    def per_image(self) -> np.ndarray:
        return np.array([r["dice"] for r in self.rows])


def evaluate_and_promote(
    settings: TrackingSettings,
    project_dir: Path,
    candidate_version: str | None = None,
    data_dir: Path | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> PromotionDecision:
    """Compare a candidate (None: the newest version) with the champion on the test
    split; move aliases if it wins.

    Args:
        settings: the registered model, its aliases and the gates (`min_dice`, `margin`).
        data_dir: the prepared data set whose test split judges both versions (the
            data the candidate was trained on); default: the project's DVC output.

    Raises:
        UsageError: unknown version or no prepared data.
    """
    project_dir = Path(project_dir).resolve()
    mlflow.set_tracking_uri(tracking.tracking_uri(project_dir))
    client = MlflowClient()
    name = settings.registered_model
    version = None if candidate_version is None else str(candidate_version)
    registered = _load_version(client, name, version)
    candidate = str(registered.version)
    data_dir = _prepared(data_dir, project_dir)
    champion = tracking.alias_version(client, name, settings.champion_alias)
    if champion == candidate:  # e.g. a first version crowned at registration
        return PromotionDecision(
            model_name=name,
            candidate_version=champion,
            champion_version=champion,
            promoted=False,
            reason="it is already the champion; nothing to do",
            candidate_dice=float("nan"),
            margin=settings.margin,
            min_dice=settings.min_dice,
        )
    scored = _Scored(candidate, _score(name, candidate, data_dir))
    decision = _decide(
        settings,
        scored,
        champion,
        lambda v: _Scored(v, _score(name, v, data_dir)),
        resamples=resamples,
        seed=seed,
    )
    _record(client, decision, settings, registered.run_id)
    return decision


def _prepared(data_dir: Path | None, project_dir: Path) -> Path:
    data_dir = Path(data_dir).resolve() if data_dir is not None else project_dir / PREPARED
    if not (data_dir / "manifest.json").is_file():
        raise UsageError(
            f"{data_dir}: no prepared data (manifest.json); run `dvc pull` or `unetflow run` "
            "first, or pass --data with a prepared data set"
        )
    return data_dir


def _decide(
    settings: TrackingSettings,
    candidate: _Scored,
    champion: str | None,
    score: Callable[[str], _Scored],
    *,
    resamples: int,
    seed: int,
) -> PromotionDecision:
    """The gate first (`min_dice`), then the paired bootstrap against the champion."""
    min_dice, margin = settings.min_dice, settings.margin
    common = {
        "model_name": settings.registered_model,
        "candidate_version": candidate.version,
        "champion_version": champion,
        "candidate_dice": candidate.dice,
        "margin": margin,
        "min_dice": min_dice,
    }
    if not (candidate.dice >= min_dice):
        reason = f"mean test Dice {candidate.dice:.4f} is below the gate min_dice={min_dice}"
        return PromotionDecision(promoted=False, reason=reason, **common)
    if champion is None:
        reason = f"no champion yet; mean test Dice {candidate.dice:.4f} passes min_dice={min_dice}"
        return PromotionDecision(promoted=True, reason=reason, **common)
    held = score(champion)
    boot = paired_bootstrap(candidate.per_image(), held.per_image(), resamples, seed=seed)
    promoted = boot.ci_low > margin
    relation = "above" if promoted else "not above"
    reason = f"CI lower bound {boot.ci_low:+.4f} is {relation} the margin {margin}"
    return PromotionDecision(
        promoted=promoted, reason=reason, champion_dice=held.dice, bootstrap=boot, **common
    )


def _record(
    client: MlflowClient,
    decision: PromotionDecision,
    settings: TrackingSettings,
    run_id: str | None,
) -> None:
    """Write the comparison to the candidate (description, tags, run artifacts); move aliases."""
    name, version = decision.model_name, decision.candidate_version
    table = decision.markdown()
    # Keep the training summary; replace an earlier promotion check rather than stack them.
    original = (client.get_model_version(name, version).description or "").split(_HEADING)[0]
    description = f"{original.rstrip()}\n\n{_HEADING}\n\n{table}".lstrip()
    client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, f"{tracking.TAG}promotion", decision.reason)
    if run_id:
        stem = f"promotion/v{version}-vs-v{decision.champion_version or 'none'}"
        client.log_text(run_id, table, f"{stem}.md")
        client.log_text(run_id, json.dumps(decision.as_dict(), indent=2), f"{stem}.json")
    if not decision.promoted:
        return
    if decision.champion_version is not None:
        client.set_registered_model_alias(name, settings.previous_alias, decision.champion_version)
    client.set_registered_model_alias(name, settings.champion_alias, version)


@dataclass(frozen=True)
class Rollback:
    model_name: str
    restored: str  # the version that is champion again
    demoted: str | None  # the champion before the rollback


def rollback(settings: TrackingSettings, project_dir: Path = Path(".")) -> Rollback:
    """Give the champion alias back to the previous champion and drop the previous alias.

    Raises:
        UsageError: no version holds the previous-champion alias.
    """
    mlflow.set_tracking_uri(tracking.tracking_uri(Path(project_dir).resolve()))
    client = MlflowClient()
    name, champion, previous_alias = (
        settings.registered_model,
        settings.champion_alias,
        settings.previous_alias,
    )
    previous = tracking.alias_version(client, name, previous_alias)
    if previous is None:
        raise UsageError(
            f"model {name!r} has no {previous_alias!r} version to roll back to; "
            "a rollback needs an earlier promotion"
        )
    current = tracking.alias_version(client, name, champion)
    client.set_registered_model_alias(name, champion, previous)
    client.delete_registered_model_alias(name, previous_alias)
    if current is not None:
        client.set_model_version_tag(
            name, current, f"{tracking.TAG}rolled_back", f"replaced by v{previous}"
        )
    return Rollback(name, previous, current)
