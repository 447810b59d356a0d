"""Tune storage on S3 keeps its URI intact, and concurrency never pins an autoscaling
cluster to the resources it happened to have at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.runner import max_concurrent
from tune.search_config import SearchConfig
from unetflow.config import ExperimentConfig
from unetflow.storage import join, read_text, write_text


def test_join_keeps_uris_and_local_paths() -> None:
    assert join("s3://bucket/searches", "hpo") == "s3://bucket/searches/hpo"
    assert join("s3://bucket/searches/", "hpo", "train") == "s3://bucket/searches/hpo/train"
    assert join("/data/tune", "hpo") == "/data/tune/hpo"


def _search(**kw) -> SearchConfig:
    return SearchConfig(space="tune/spaces/hpo.yaml", **kw)


def test_random_search_leaves_queueing_to_tune_even_with_zero_gpus_now() -> None:
    search = _search(gpus_per_trial=1)
    assert max_concurrent(search, ExperimentConfig(), 16, {"CPU": 8, "GPU": 0}) is None


def test_adaptive_search_takes_what_fits_or_no_cap_when_nothing_fits_yet() -> None:
    search = _search(search_alg="optuna", gpus_per_trial=1, cpus_per_trial=2)
    base = ExperimentConfig.model_validate({"scaling": {"num_workers": 1}})  # one-process trials
    assert max_concurrent(search, base, 16, {"CPU": 16, "GPU": 4}) == 4
    assert max_concurrent(search, base, 3, {"CPU": 16, "GPU": 4}) == 3
    assert max_concurrent(search, base, 16, {"CPU": 8, "GPU": 0}) is None  # autoscaler
    assert max_concurrent(_search(max_concurrent_trials=5), base, 16, {"CPU": 1}) == 5
    # A 2-worker GPU trial occupies 2 GPUs.
    gpu_workers = {"scaling": {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 1}}
    two = ExperimentConfig.model_validate(gpu_workers)
    assert max_concurrent(search, two, 16, {"CPU": 16, "GPU": 4}) == 2


@pytest.mark.parametrize("alg", ["random", "grid"])
def test_max_concurrent_caps_random_and_grid_searches(alg: str) -> None:
    # Tune applies `max_concurrent_trials` to a Searcher only and ignores it (with a
    # warning) for its variant generator: the cap has to be the generator's own.
    from tune import algorithms
    from tune.space import load_space

    space = load_space("tune/spaces/hpo.yaml")
    generator, _ = algorithms.build(_search(search_alg=alg, max_concurrent_trials=1), space)
    assert generator.max_concurrent == 1
    uncapped, _ = algorithms.build(_search(search_alg=alg), space)
    assert uncapped.max_concurrent == 0  # Tune's "no cap"


@pytest.mark.integration
def test_state_file_round_trips_through_a_real_s3_endpoint() -> None:
    from tests.support.s3 import s3_server_in_env

    with s3_server_in_env("searches") as s3:
        uri = join("s3://searches/tune", "hpo.unetflow_search.json")
        assert read_text(uri) is None
        write_text(uri, '{"ok": 1}')
        assert read_text(uri) == '{"ok": 1}'
        body = s3.client().get_object(Bucket="searches", Key="tune/hpo.unetflow_search.json")
        assert body["Body"].read() == b'{"ok": 1}'
        assert not Path("s3:").exists()  # nothing written to a local "s3:/..." folder


@pytest.mark.slow
@pytest.mark.integration
def test_search_with_storage_on_s3_runs_and_keeps_its_state_in_the_bucket(tmp_path: Path) -> None:
    """`unetflow tune --storage-path s3://...`: pyarrow got `s3:/b/x/name` and refused."""
    import os
    import subprocess
    import sys

    from tests.support.s3 import s3_server

    repo = Path(__file__).resolve().parents[2]
    with s3_server() as s3:
        s3.create_bucket("searches")
        env = {**os.environ, **s3.env(), "PYTHONPATH": str(repo)}
        env.pop("RAY_ADDRESS", None)
        args = ["--space", str(repo / "tune/spaces/hpo.yaml"), "--smoke-test", "--no-track"]
        args += ["--num-samples", "1", "--storage-path", "s3://searches/tune"]
        args += ["--project-dir", str(tmp_path)]
        proc = subprocess.run(
            [sys.executable, "-m", "unetflow_cli", "tune", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "storage: s3://searches/tune/hpo-smoke" in proc.stdout
        listing = s3.client().list_objects_v2(Bucket="searches", Prefix="tune/")
        keys = [o["Key"] for o in listing.get("Contents", [])]
        assert "tune/hpo-smoke.unetflow_search.json" in keys
        assert any(k.startswith("tune/hpo-smoke/") and "checkpoint" in k for k in keys), keys
    assert not (tmp_path / "s3:").exists()
