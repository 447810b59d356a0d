"""One tiny `unetflow train` through the installed console script, as a user runs it.

Several tests read the same run from different sides (what the console shows, where
secrets went), so the session pays for one CLI training instead of one per test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# val_every 2: epoch 1 neither validates nor checkpoints, so it reports nothing to Ray.
SETTINGS = (
    "data.path=raw",
    "train.epochs=3",
    "train.val_every=2",
    "model.base_channels=4",
    "model.depth=2",
    "scaling.num_workers=1",
)


@dataclass(frozen=True)
class CliTraining:
    proc: subprocess.CompletedProcess
    project: Path
    prefect_home: Path
    canaries: dict[str, str]  # secret variables set to unique values for this run

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


def canaries() -> dict[str, str]:
    """Unique values for the secret variables users set (AWS, Ray token, databases)."""
    return {
        "AWS_ACCESS_KEY_ID": f"AKIACANARY{secrets.token_hex(5).upper()}",
        "AWS_SECRET_ACCESS_KEY": f"canary-aws-{secrets.token_hex(12)}",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),  # a valid token: the local Ray uses it
        "PGPASSWORD": f"canary-db-{secrets.token_hex(8)}",
        "MLFLOW_TRACKING_PASSWORD": f"canary-mlflow-{secrets.token_hex(8)}",
    }


def run_cli_training(root: Path, make_raw_folder) -> CliTraining:
    """`unetflow train` on a raw folder in `root/project`, with canary secrets set, its
    own local Ray and its own temporary Prefect server (no client settings inherited)."""
    project = root / "project"
    project.mkdir()
    make_raw_folder(project, n=8)
    values = canaries()
    ray_tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")  # short: Ray's Unix socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env.pop("PREFECT_API_URL", None)
    env |= values | {
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a loaded CI machine
        "RAY_TMPDIR": ray_tmp,
    }
    argv = [str(Path(sys.executable).with_name("unetflow")), "train", "--project-dir", str(project)]
    for setting in SETTINGS:
        argv += ["--set", setting]
    try:
        proc = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return CliTraining(proc, project, root / "prefect", values)
