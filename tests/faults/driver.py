"""A training driver in its own process, for tests that need a Ray cluster of their own
(the test session may already hold a local Ray). Prints one `RESULT {json}` line.

Usage: python -m tests.faults.driver CONFIG_JSON DATA RUN_NAME STORAGE
"""

from __future__ import annotations

import json
import sys

from ray.util.state import list_actors

from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray


def main(config: str, data: str, name: str, storage: str) -> None:
    outcome = fit_with_ray(parse_config(json.loads(config)), data, name, storage)
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=100)
    result = {"history": outcome.history, "worker_actors": len(workers)}
    print("RESULT " + json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
