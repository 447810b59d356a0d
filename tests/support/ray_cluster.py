"""A real two-node Ray cluster on 127.0.0.1 with token authentication, for tests.

A head node and a worker node are separate `ray start --block` processes, each in its
own session with its own temp folder and free ports, so the cluster is stopped by
signalling exactly the processes it started; `ray stop` would kill every Ray process of
the machine, including other local Ray instances.

Example:
    >>> with ray_cluster(env=s3.env()) as cluster:
    ...     subprocess.run([...], env={**os.environ, **cluster.env()})
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from unetflow.stack.ray import NO_DRAIN, pids_naming, port_args

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class RayCluster:
    address: str  # GCS address, 127.0.0.1:PORT
    token: str = field(repr=False)  # never printed
    temp_dir: Path = Path()

    def env(self) -> dict[str, str]:
        """What a driver process needs to connect (address, auth mode and token).

        The driver runs in Ray's single-node mode, like the head, so 127.0.0.1 stays
        127.0.0.1 and it attaches to the head node.
        """
        return {
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a unit
        )


def _node_alive(log: Path, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return "--block" in log.read_text(errors="replace")  # printed once the node is up


def _stop(procs: list[subprocess.Popen], temp_dir: Path) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        for pid in pids_naming(temp_dir):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
            any(p.poll() is None for p in procs) or pids_naming(temp_dir)
        ):
            time.sleep(0.25)
    for proc in procs:
        proc.wait(5)


@contextmanager
def ray_cluster(
    head_resources: dict[str, float] | None = None,
    worker_resources: dict[str, float] | None = None,
    cpus_per_node: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[RayCluster]:
    """Start a head and a worker node on 127.0.0.1; yield once both are registered.

    Args:
        head_resources / worker_resources: custom resources of each node, e.g.
            `{"trainer": 1}` on both to place one training worker per node.
        env: extra environment for every Ray process (e.g. S3 credentials for
            checkpoints written by workers).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Unix socket paths
    token = secrets.token_hex(32)
    node_env = {
        **os.environ,
        **(env or {}),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        **NO_DRAIN,  # stopped as a group: a drain on SIGTERM only waits for the dead GCS
    }
    node_env.pop("RAY_ADDRESS", None)
    # Every node on its own loopback address, so no traffic leaves lo. Ray rewrites
    # "127.0.0.1"/"localhost" to the machine's outward IP except in its single-node
    # mode, in which it also binds to 127.0.0.1 only. The head runs in that mode; a
    # joining node may not, so it takes 127.0.0.3 and names the head by the IPv4-mapped
    # form [::ffff:127.0.0.1], which Ray does not rewrite.
    head_env = {**node_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    worker_env = {k: v for k, v in node_env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    port = free_port()
    taken = {port}  # every port this cluster uses, so no two of its listeners collide
    address = f"127.0.0.1:{port}"
    common = [f"--num-cpus={cpus_per_node}", "--num-gpus=0"]
    procs: list[subprocess.Popen] = []
    try:
        head_log = temp_dir / "head.log"
        procs.append(
            _start_node(
                [
                    "--head",
                    f"--port={port}",
                    "--dashboard-host=127.0.0.1",
                    "--include-dashboard=true",
                    f"--temp-dir={temp_dir / 'h'}",
                    f"--resources={json.dumps(head_resources or {})}",
                    "--node-ip-address=127.0.0.1",
                    *common,
                    *port_args(head=True, taken=taken),
                ],
                head_env,
                head_log,
            )
        )
        wait_until(lambda: _node_alive(head_log, procs[0]), "Ray head node", timeout)
        wait_until(lambda: port_open(port), "Ray GCS port", timeout)
        # Ray gives a joining raylet a fixed 30 s to register with the GCS; on a busy
        # 2-core machine that can pass, so a node that timed out is started once more.
        for attempt in (1, 2):
            worker_log = temp_dir / f"worker-{attempt}.log"
            procs.append(
                _start_node(
                    [
                        f"--address=[::ffff:127.0.0.1]:{port}",
                        "--node-ip-address=127.0.0.3",
                        f"--temp-dir={temp_dir / f'w{attempt}'}",
                        f"--resources={json.dumps(worker_resources or {})}",
                        *common,
                        *port_args(head=False, taken=taken),
                    ],
                    worker_env,
                    worker_log,
                )
            )
            try:
                alive = lambda log=worker_log, proc=procs[-1]: _node_alive(log, proc)  # noqa: E731
                wait_until(alive, "Ray worker node", timeout)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                _stop([procs.pop()], temp_dir / f"w{attempt}")
        yield RayCluster(address=address, token=token, temp_dir=temp_dir)
    finally:
        _stop(procs, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
