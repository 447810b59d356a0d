"""The S3 endpoint goes away for about 10 s while checkpoints upload: the uploads retry
and succeed, the run finishes without a restart, and every checkpoint in the bucket is
whole. A real moto server behind a proxy that resets every connection while down, and a
Ray cluster (head + worker node on loopback, token auth) whose nodes hold the S3
credentials, as a deployment's would."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.faults.common import (
    DICE_TOLERANCE,
    EPOCHS,
    Background,
    fit_config,
    run_driver,
    wait_for,
)
from tests.support.ray_cluster import ray_cluster
from tests.support.s3 import OutageProxy, S3Endpoint, s3_server
from unet_core.engine import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
OUTAGE_S = 10.0
BUCKET = "faults"


def _keys(s3: S3Endpoint, suffix: str = "/checkpoint.pt") -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="runs/")
    return sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(suffix))


def test_checkpoint_uploads_retry_through_an_s3_outage(
    prepared_dir: Path, baseline_dice: float, fault_record, tmp_path: Path
) -> None:
    fault_record.fault = f"S3 endpoint down {OUTAGE_S:.0f} s during checkpoint uploads"
    fault_record.baseline_dice = baseline_dice
    # No restart allowed: the uploads themselves must ride out the outage.
    cfg = fit_config(storage_path=f"s3://{BUCKET}/runs", max_failures=0)
    with s3_server() as s3, OutageProxy(s3.port) as proxy:
        s3.create_bucket(BUCKET)
        # Every Ray process and the driver reach S3 through the proxy only.
        via_proxy = {**s3.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}
        with ray_cluster(env=via_proxy) as cluster:
            env = {**os.environ, **via_proxy, **cluster.env(), "PYTHONPATH": str(REPO)}
            args = [cfg.model_dump_json(), str(prepared_dir), "s3outage"]
            driver = Background(
                lambda: run_driver(*args, cfg.checkpoint.storage_path, env, tmp_path)
            )
            wait_for(lambda: _keys(s3), "the first checkpoint in the bucket")
            proxy.down()
            down_at = time.monotonic()
            time.sleep(OUTAGE_S)
            proxy.up()
            refused, written = proxy.refused, len(_keys(s3))
            # Recovered: the next checkpoint reached the bucket (or the run ended).
            wait_for(lambda: len(_keys(s3)) > written or not driver.alive(), "an upload")
            fault_record.recover_s = round(time.monotonic() - down_at, 1)
            proc = driver.join()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert refused >= 1, "no upload hit the outage: nothing was tested"
        result = json.loads(
            next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).split(" ", 1)[1]
        )
        keys = _keys(s3)
        epochs = []
        for key in keys:  # every checkpoint in the bucket is whole
            local = tmp_path / "ckpt.pt"
            s3.client().download_file(BUCKET, key, str(local))
            epochs.append(int(load_checkpoint(local)["epoch"]))
    history = result["history"]
    assert [int(h["epoch"]) for h in history] == list(range(EPOCHS))
    assert sorted(epochs) == list(range(EPOCHS)), keys  # each epoch written once
    assert result["worker_actors"] == 1, "the worker group was restarted"
    fault_record.intervals_lost = 0
    fault_record.dice = float(history[-1]["val_dice"])
    assert abs(fault_record.dice - baseline_dice) <= DICE_TOLERANCE
    fault_record.mark_survived()
