"""The entry point of a training Ray Job (`unetflow train --submit`).

It runs on the cluster's head node. Prefect is not started here: what is orchestrated
is the submitter (the CLI or the Prefect `train` flow), which follows this job; the job
only trains, evaluates and registers, like the `train-and-register` task does.

Usage (written by `unetflow.jobs`): python -m unetflow.job_driver CONFIG.yaml JOB_ID
"""

from __future__ import annotations

import sys
from pathlib import Path

from unetflow.config import load_config
from unetflow.tracking import TAG
from unetflow.training import train_and_register
from unetflow.user_errors import USER_ERRORS


def main(argv: list[str] | None = None) -> int:
    config_path, job_id = (argv if argv is not None else sys.argv[1:])[:2]
    project = Path.cwd()
    try:
        # Resolves the data and plans the config itself, before MLflow or Ray start.
        report = train_and_register(load_config(config_path), project, "", {"ray_job_id": job_id})
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    champion = " (champion)" if report.became_champion else ""
    version = report.lineage.get(f"{TAG}data_version")
    print("=== unetflow job finished ===")
    print(f"data version:   {version}")
    print(
        f"test Dice/IoU:  {report.test_metrics['test_dice']:.4f} / {report.test_metrics['test_iou']:.4f}"
    )
    print(f"MLflow run:     {report.run_id}")
    print(f"model version:  models:/{report.registered_name}/{report.version}{champion}")
    print(f"checkpoints:    {report.storage_path}/{report.ray_run_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
