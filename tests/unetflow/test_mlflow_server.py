"""Against a real `mlflow server` (PostgreSQL store, S3 artifacts on moto): one tiny
training shared by all tests, then registration, gated promotion, rollback, lineage and
a search for leaked secrets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from unetflow.config import TrackingSettings, load_config, parse_config
from unetflow.plan import planned

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MODEL = "unet-seg"
DB_PASSWORD = "Pg-Passw0rd-9f8e7d"  # in a URL that reaches the lineage tags
TINY = {
    "name": "tiny",
    "model": {"preset": "unet", "base_channels": 8, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4},
    "scaling": {"num_workers": 2},
    "tracking": {"min_dice": 1.0},  # unreachable: training must not crown this version
}


def _git_project(root: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "-q")
    git("add", "params.yaml")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_dir: Path, ray_local):
    """Server stack + one training registered as version 1 (secrets in env and lineage)."""
    from tests.support.mlflow_server import mlflow_stack
    from unetflow.training import train_and_register

    root = tmp_path_factory.mktemp("server-project")
    shutil.copytree(prepared_dir, root / "data" / "prepared")
    (root / "params.yaml").write_text("seed: 1\n")
    _git_project(root)
    with mlflow_stack() as uri, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("AWS_SECRET_ACCESS_KEY", "aws-Secret-Key/For+Test0123")
        lineage = {
            "prefect_flow_run_id": "flow-run-1",
            "prefect_api_db": f"postgresql://prefect:{DB_PASSWORD}@127.0.0.1:5432/prefect",
            "tune_search_id": "search-7",
            "tune_trial_id": "trial-3",
        }
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        report = train_and_register(parse_config(TINY), root, "md5-data-v1", lineage)
        mlflow.set_tracking_uri(uri)
        yield {"uri": uri, "root": root, "report": report}


def test_training_logs_run_artifacts_and_gates_champion(trained) -> None:
    report, client = trained["report"], MlflowClient()
    assert trained["uri"].startswith("http://127.0.0.1:")
    run = client.get_run(report.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied to S3
    assert {"test_dice", "test_iou", "test_dice_per_image_mean"} <= set(run.data.metrics)
    assert any(k.startswith("system/") for k in run.data.metrics), "no system metrics"
    files = {f.path for f in client.list_artifacts(report.run_id, "plots")}
    assert files == {"plots/learning_curves.png", "plots/val_predictions.png"}
    table_dir = mlflow.artifacts.download_artifacts(
        run_id=report.run_id, artifact_path="evaluation"
    )
    table = yaml.safe_load(Path(table_dir, "test_per_image.json").read_text())
    assert {"image", "dice", "iou", "hd95"} <= set(table["columns"]) and len(table["data"]) == 8
    # min_dice 1.0 is out of reach: registered, but not champion.
    assert report.version == "1" and not report.became_champion
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(MODEL, "champion")
    version = client.get_model_version(MODEL, "1")
    assert version.tags["unetflow.data_version"] == "md5-data-v1"
    assert version.tags["unetflow.tune_trial_id"] == "trial-3"
    assert version.tags["unetflow.run_id"] == report.run_id
    assert len(version.tags["unetflow.git_commit"]) == 40
    assert "test Dice" in version.description


def test_promotion_rollback_and_lineage(trained) -> None:
    from unetflow.promotion import evaluate_and_promote
    from unetflow_cli.main import main

    root, report, client = trained["root"], trained["report"], MlflowClient()
    # No champion: the absolute gate decides.
    refused = evaluate_and_promote(TrackingSettings(min_dice=1.0), root, "1")
    assert not refused.promoted and "below the gate" in refused.reason
    first = evaluate_and_promote(TrackingSettings(min_dice=0.0), root, "1")
    assert first.promoted and _alias(client, "champion") == "1"
    assert "already the champion" in evaluate_and_promote(TrackingSettings(), root, "1").reason
    # The same weights again: identical per-image Dice, not promoted.
    mlflow.register_model(report.model_uri, MODEL)
    same = evaluate_and_promote(TrackingSettings(min_dice=0.0), root, "2")
    assert not same.promoted and same.bootstrap.ci_low == 0.0
    assert "not promoted" in client.get_model_version(MODEL, "2").description
    # An untrained version as champion: the trained one clearly beats it.
    _register_untrained(root / "data" / "prepared")
    client.set_registered_model_alias(MODEL, "champion", "3")
    assert main(["promote", "--candidate", "1", "--min-dice", "0", "--project-dir", str(root)]) == 0
    assert _alias(client, "champion") == "1" and _alias(client, "previous-champion") == "3"
    artifacts = {f.path for f in client.list_artifacts(report.run_id, "promotion")}
    assert "promotion/v1-vs-v3.md" in artifacts
    description = client.get_model_version(MODEL, "1").description
    assert "95% bootstrap CI" in description and "test Dice" in description  # training's kept
    assert description.count("## Promotion check") == 1
    # Rollback restores the old champion once; a second rollback has nothing to restore.
    assert main(["rollback", "--model", MODEL, "--project-dir", str(root)]) == 0
    assert _alias(client, "champion") == "3" and _alias(client, "previous-champion") is None
    assert main(["rollback", "--project-dir", str(root)]) == 2


def test_promotion_and_rollback_honour_a_non_default_alias(trained) -> None:
    from unetflow.promotion import evaluate_and_promote
    from unetflow_cli.main import main

    root, client = str(trained["root"]), MlflowClient()
    before = _alias(client, "champion")
    custom = TrackingSettings(champion_alias="prod", previous_alias="prod-before", min_dice=0.0)
    # No version holds @prod yet: the gate alone decides, and only @prod moves.
    assert evaluate_and_promote(custom, Path(root), "3").promoted
    assert _alias(client, "prod") == "3" and _alias(client, "champion") == before
    aliases = ["--alias", "prod", "--previous-alias", "prod-before", "--project-dir", root]
    assert main(["promote", "--candidate", "1", "--min-dice", "0", *aliases]) == 0
    assert _alias(client, "prod") == "1" and _alias(client, "prod-before") == "3"
    assert main(["rollback", *aliases]) == 0
    assert _alias(client, "prod") == "3" and _alias(client, "prod-before") is None
    assert _alias(client, "champion") == before
    # A min_dice above every version's Dice keeps @prod where it is.
    strict = custom.model_copy(update={"min_dice": 1.0})
    assert not evaluate_and_promote(strict, Path(root), "1").promoted
    assert _alias(client, "prod") == "3"


def test_lineage_prints_chain_and_reproduce_command(trained, capsys) -> None:
    from unetflow_cli.main import main

    root = trained["root"]
    assert main(["lineage", f"models:/{MODEL}/1", "--project-dir", str(root)]) == 0
    out = capsys.readouterr().out
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    assert "md5-data-v1" in out and "flow-run-1" in out and "search-7" in out
    config = root / ".unetflow" / "lineage" / f"{MODEL}-v1" / "config.yaml"
    assert (
        f"git checkout {commit} && dvc pull data/prepared && unetflow train --config {config}"
        in out
    )
    # The logged config is the one trained: TINY plus what the plan set from the data.
    assert load_config(config) == planned(root, parse_config(TINY))[0]


def test_no_secret_reaches_mlflow(trained, tmp_path: Path) -> None:
    client, report = MlflowClient(), trained["report"]
    secrets = ["aws-Secret-Key/For+Test0123", DB_PASSWORD, "testing-secret"]
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if token_file.is_file():
        secrets.append(token_file.read_text().strip())
    run = client.get_run(report.run_id)
    texts = [*run.data.params.items(), *run.data.tags.items(), *run.data.metrics]
    for mv in client.search_model_versions(f"name='{MODEL}'"):
        texts += [*mv.tags.items(), mv.description or ""]
    blob = repr(texts)
    assert "postgresql://prefect:***@" in blob  # the URL is kept, its password is not
    mlflow.artifacts.download_artifacts(run_id=report.run_id, dst_path=str(tmp_path))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for secret in secrets:
        assert secret not in blob
        leaked = [p for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, f"secret found in {leaked}"


def _alias(client: MlflowClient, alias: str) -> str | None:
    from unetflow.tracking import alias_version

    return alias_version(client, MODEL, alias)


def _register_untrained(data_dir: Path) -> None:
    """Version 3: the same architecture with random weights (a clearly worse model)."""
    import tempfile

    import torch

    from unet_core.data import read_manifest
    from unet_core.models import create_model
    from unet_core.package import InferenceSpec, save_package
    from unetflow import tracking

    cfg = parse_config(TINY)
    torch.manual_seed(0)
    manifest = read_manifest(data_dir)
    spec = InferenceSpec(mean=manifest.mean, std=manifest.std, mode="binary", threshold=0.99)
    weights = create_model(cfg.model).state_dict()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="untrained"):
        package = save_package(Path(tmp) / "model.pt", weights, cfg.model, spec)
        uri = tracking.log_model(package, np.zeros((1, 1, 32, 32), np.float32), 1, 2).model_uri
    mlflow.register_model(uri, MODEL)
