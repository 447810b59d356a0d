"""The second node of a two-node cluster dies mid-epoch (every process of it SIGKILLed)
and a replacement node joins, as an autoscaler would bring one: Ray Train restarts the
worker group from the latest checkpoint on S3 and training finishes, repeating at most
one checkpoint interval, with the Dice of an uninterrupted run on the same cluster."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.common import (
    DICE_TOLERANCE,
    PROMPT_RECORDING,
    SLOW_MODEL,
    Background,
    fit_config,
    intervals_lost,
    run_driver,
    wait_for,
)
from tests.support.ray_cluster import _node_alive, _start_node, ray_cluster
from tests.support.s3 import S3Endpoint, s3_server
from unet_core.engine import load_checkpoint
from unetflow.stack.ray import NO_DRAIN, pids_naming, port_args

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
BUCKET = "nodes"
# More epochs than the other fault tests, of the slow model: on a busy machine the first
# checkpoint is seen late, on a quiet one training is fast; the kill must land mid-run.
NODE_EPOCHS = 8


def _config(max_failures: int) -> str:
    cfg = fit_config(
        epochs=NODE_EPOCHS, storage_path=f"s3://{BUCKET}/runs", max_failures=max_failures
    )
    # One rank per node, so losing the second node loses a rank.
    scaling = {"num_workers": 2, "resources_per_worker": {"trainer": 1}}
    scaling["placement_strategy"] = "STRICT_SPREAD"
    data = cfg.model_dump(mode="json")
    data["model"] = {**data["model"], **SLOW_MODEL}
    data["train"]["batch_size"] = 4
    return json.dumps({**data, "scaling": scaling})


def _driver(env: dict, cwd: Path, data: Path, name: str, max_failures: int):
    return run_driver(_config(max_failures), str(data), name, f"s3://{BUCKET}/runs", env, cwd)


def _result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.split(" ", 1)[1])


def _epochs(s3: S3Endpoint, run: str, tmp: Path) -> list[int]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{run}/")
    keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith("/checkpoint.pt")]
    epochs = []
    for key in keys:
        s3.client().download_file(BUCKET, key, str(tmp / "c.pt"))
        epochs.append(int(load_checkpoint(tmp / "c.pt")["epoch"]))
    return sorted(epochs)


def _replace_node(temp_dir: Path, address: str, env: dict) -> None:
    """Kill every process of the joined node, then start a fresh one in its place."""
    joined = [d for d in temp_dir.iterdir() if d.name.startswith("w")]
    for folder in joined:
        for pid in pids_naming(folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    port = address.rsplit(":", 1)[1]
    log = temp_dir / "replacement.log"
    args = [
        f"--address=[::ffff:127.0.0.1]:{port}",
        "--node-ip-address=127.0.0.3",
        f"--temp-dir={temp_dir / 'w9'}",  # under the cluster's folder: stopped with it
        '--resources={"trainer": 1}',
        "--num-cpus=1",
        "--num-gpus=0",
        *port_args(head=False, taken=set()),
    ]
    proc = _start_node(args, env, log)
    wait_for(lambda: _node_alive(log, proc), "the replacement node", timeout=120)


def test_second_node_dies_mid_epoch_and_training_finishes(
    prepared_dir: Path, fault_record, tmp_path: Path
) -> None:
    fault_record.fault = "second node of a two-node cluster killed mid-epoch (then replaced)"
    with s3_server() as s3:
        s3.create_bucket(BUCKET)
        cluster_env = {**s3.env(), **PROMPT_RECORDING}
        with ray_cluster({"trainer": 1}, {"trainer": 1}, cpus_per_node=1, env=cluster_env) as rc:
            env = {**os.environ, **s3.env(), **rc.env(), "PYTHONPATH": str(REPO)}
            node_env = {**env, "RAY_USAGE_STATS_ENABLED": "0", **NO_DRAIN}
            for key in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
                node_env.pop(key)
            baseline = _result(_driver(env, tmp_path, prepared_dir, "whole", 0))
            run = Background(lambda: _driver(env, tmp_path, prepared_dir, "faulted", 1))
            wait_for(lambda: _epochs(s3, "faulted", tmp_path), "the first checkpoint")
            at_fault = max(_epochs(s3, "faulted", tmp_path))
            killed_at = time.monotonic()
            _replace_node(rc.temp_dir, rc.address, node_env)
            wait_for(lambda: max(_epochs(s3, "faulted", tmp_path)) > at_fault, "a new checkpoint")
            fault_record.recover_s = round(time.monotonic() - killed_at, 1)
            proc = run.join()
            result = _result(proc)
    fault_record.baseline_dice = float(baseline["history"][-1]["val_dice"])
    resumed = re.findall(r"resuming after epoch (\d+)", proc.stdout + proc.stderr)
    assert resumed, "the worker group was not restarted: the fault hit nothing"
    resumed_from = int(resumed[-1]) - 1  # the epoch of the checkpoint it resumed from
    assert [int(h["epoch"]) for h in result["history"]] == list(range(NODE_EPOCHS))
    assert resumed_from >= at_fault  # no checkpoint written before the fault was lost
    fault_record.intervals_lost = intervals_lost(at_fault, resumed_from)
    fault_record.dice = float(result["history"][-1]["val_dice"])
    assert abs(fault_record.dice - fault_record.baseline_dice) <= DICE_TOLERANCE
    assert fault_record.intervals_lost <= 1
    fault_record.mark_survived()
