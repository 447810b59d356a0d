"""Redaction of credentials and model URI parsing (fast, no services)."""

from __future__ import annotations

import pytest

from unetflow.errors import UsageError
from unetflow.lineage import parse_model_uri
from unetflow.tracking import lineage_tags, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://mlflow:hunter2pw@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        ("s3://AKIAXX:secret/key@bucket/prefix", "s3://AKIAXX:***@bucket/prefix"),
        ("http://host/x?token=abc123&x=1", "http://host/x?token=***&x=1"),
        ("https://b.s3/k?X-Amz-Signature=deadbeef", "https://b.s3/k?X-Amz-Signature=***"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("/plain/folder/ray_results", "/plain/folder/ray_results"),
    ],
)
def test_redact_masks_uri_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_secret_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG")
    monkeypatch.setenv("SOME_FLAG", "wJalrXUtnFEMI-not-a-secret-name")
    assert redact("key=wJalrXUtnFEMI-K7MDENG end") == "key=*** end"
    tags = lineage_tags({"storage": "s3://u:p4ss@b/x", "missing": None})
    assert tags == {"unetflow.storage": "s3://u:***@b/x"}


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/unet-seg/3", ("unet-seg", "3", None)),
        ("models:/unet-seg@champion", ("unet-seg", None, "champion")),
        ("models:/a.b@previous-champion", ("a.b", None, "previous-champion")),
    ],
)
def test_parse_model_uri(uri: str, parsed: tuple) -> None:
    assert parse_model_uri(uri) == parsed


def test_parse_model_uri_rejects_other_forms() -> None:
    with pytest.raises(UsageError, match="expected models:/NAME/VERSION"):
        parse_model_uri("runs:/abc/model")


@pytest.fixture(scope="module")
def embedded_store(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite store for the module (creating one runs all of MLflow's migrations)."""
    import mlflow

    from unetflow.tracking import tracking_uri

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(tracking_uri(tmp_path_factory.mktemp("store")))
        yield


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, "FINISHED"), (RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")],
)
def test_tracked_run_ends_truthfully(embedded_store, error, status) -> None:
    import mlflow
    from mlflow import MlflowClient

    from unetflow.tracking import tracked_run

    expected = (type(error),) if error is not None else ()
    try:
        with tracked_run(run_name="t") as run:
            if error is not None:
                raise error
    except expected:
        pass
    assert MlflowClient().get_run(run.info.run_id).info.status == status
    assert mlflow.active_run() is None


def test_a_rerun_continues_the_unfinished_run_of_its_ray_run(embedded_store) -> None:
    import mlflow
    from mlflow import MlflowClient

    from unetflow.tracking import TAG, unfinished_run

    experiment = mlflow.create_experiment("reruns")
    client = MlflowClient()

    clock = iter(range(1_000, 10_000, 1_000))  # start times in ms, one apart

    def run(name: str, status: str) -> str:
        tags = {f"{TAG}ray_run_name": name}
        started = client.create_run(experiment, start_time=next(clock), tags=tags)
        if status != "RUNNING":  # RUNNING: its process was SIGKILLed, nothing ended it
            client.set_terminated(started.info.run_id, status)
        return started.info.run_id

    run("a", "FINISHED")
    assert unfinished_run(experiment, "a") is None  # a finished training starts anew
    killed = run("a", "RUNNING")
    run("b", "FAILED")
    assert unfinished_run(experiment, "a") == killed
    failed = run("a", "FAILED")  # newest first
    assert unfinished_run(experiment, "a") == failed
