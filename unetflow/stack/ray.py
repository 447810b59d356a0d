"""A Ray head and one worker node on loopback, with token authentication.

Ray listens on loopback only for a node whose IP is 127.0.0.1, and `ray start` keeps
that IP only in its single-node mode. The head runs in that mode; the joining node, which
may not, is started by `unetflow.stack.ray_node` (`ray start` without the rewrite of
127.0.0.1), so both nodes have IP 127.0.0.1 and listen on it alone, as the nodes of Ray's
own `cluster_utils.Cluster` share one IP. Every listener gets a port chosen here, so two
nodes or two clusters on one machine never collide, and each node is stopped by
signalling exactly its processes: `ray stop` would kill every Ray process of the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from unetflow.stack.base import StackContext, base_env
from unetflow.stack.net import LOOPBACK, free_port, port_open
from unetflow.stack.process import spawn

RAY = str(Path(sys.executable).with_name("ray"))
WORKER_PORTS = 41  # worker-port range per node: enough for a few training workers


def port_args(head: bool, taken: set[int]) -> list[str]:
    """`ray start` arguments that give every listener of a node a free port.

    `taken` holds the ports already given to this cluster (both nodes, worker ranges
    included) and gains this node's: Ray refuses to start when a listener's port falls
    inside a worker-port range, and two free ports drawn apart can do just that.
    """
    low = _unused(taken, WORKER_PORTS)
    taken.update(range(low, low + WORKER_PORTS))
    names = [
        "--node-manager-port",
        "--object-manager-port",
        "--metrics-export-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
    ]
    if head:
        names += ["--ray-client-server-port", "--dashboard-port"]
    args = []
    for name in names:
        port = _unused(taken)
        taken.add(port)
        args += [name, str(port)]
    high = low + WORKER_PORTS - 1
    return [*args, "--min-worker-port", str(low), "--max-worker-port", str(high)]


def _unused(taken: set[int], span: int = 1) -> int:
    """A free port `p` (free right now) with none of `p .. p+span-1` in `taken`."""
    while True:
        port = free_port()
        if port + span <= 65536 and taken.isdisjoint(range(port, port + span)):
            return port


def arg_value(args: list[str], name: str) -> int:
    return int(args[args.index(name) + 1])


def pids_naming(marker: Path) -> list[int]:
    """Processes whose command line names `marker` (a cluster's temp folder): Ray's
    workers leave their node's process group, and only ours can name that folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(marker).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


# On SIGTERM, `ray start --block` first drains its node (asks the GCS to mark it draining,
# waits up to 30 s) before it stops the node's processes. A node is stopped here with its
# whole process group, which holds the GCS on the head, so the head's drain could only
# time out and the stop waited out its 15-s grace before SIGKILL (`stack down` 38.7 s,
# 19.0 s without). Nothing runs on a node being stopped here that a drain would spare.
NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def node_env(token: str, extra: dict[str, str]) -> dict[str, str]:
    env = base_env(**extra, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env |= NO_DRAIN
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env


def start_args(resources: dict[str, float] | None, cpus: int) -> list[str]:
    resources_json = json.dumps(resources or {})
    return [f"--resources={resources_json}", f"--num-cpus={cpus}", "--num-gpus=0"]


class RayHead:
    name = "ray-head"

    def __init__(self, ctx: StackContext, node_extra_env: dict[str, str]) -> None:
        self.ctx, self.node_extra_env = ctx, node_extra_env
        self.temp_dir = self.temp_dir_of(ctx.root)

    @staticmethod
    def temp_dir_of(root: Path) -> Path:
        """Ray's session folder of the stack at `root`: short and outside the project,
        since Ray's Unix socket paths must stay under 108 bytes."""
        digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
        return Path("/tmp") / f"unetflow-ray-{digest}"

    def start(self) -> None:
        port = self.ctx.port(self.name)
        taken = {port}
        listeners = port_args(head=True, taken=taken)
        self.ctx.state.extra["ray-taken"] = [str(p) for p in sorted(taken)]
        self.ctx.state.extra[self.name] = listeners
        args = [
            "--head",
            f"--port={port}",
            f"--node-ip-address={LOOPBACK}",
            f"--dashboard-host={LOOPBACK}",
            "--include-dashboard=true",
            f"--temp-dir={self.temp_dir / 'h'}",
            *start_args(None, self.ctx.options.ray_cpus_per_node),
            *listeners,
        ]
        env = node_env(self.ctx.state.ray_token, self.node_extra_env)
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # single-node mode: stays on 127.0.0.1
        self.ctx.record(self.name, _spawn_node(args, env, self.ctx, self.name))

    def healthy(self) -> bool:
        port = self.ctx.state.ports.get(self.name)
        return node_up(self.ctx, self.name) and bool(port) and port_open(port)

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name, strays=lambda: pids_naming(self.temp_dir / "h"))

    def url(self) -> str:
        """The dashboard."""
        listeners = self.ctx.state.extra.get(self.name, [])
        port = arg_value(listeners, "--dashboard-port") if listeners else None
        return f"http://{LOOPBACK}:{port}"

    def env(self) -> dict[str, str]:
        """A driver runs in single-node mode too, so 127.0.0.1 stays 127.0.0.1."""
        return {
            "RAY_ADDRESS": f"{LOOPBACK}:{self.ctx.state.ports.get(self.name)}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.ctx.state.ray_token,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }


class RayWorker:
    name = "ray-worker"

    def __init__(self, ctx: StackContext, head: RayHead) -> None:
        self.ctx, self.head = ctx, head

    def start(self) -> None:
        taken = {int(p) for p in self.ctx.state.extra.get("ray-taken", [])}
        taken.add(self.ctx.state.ports[self.head.name])
        listeners = port_args(head=False, taken=taken)
        self.ctx.state.extra[self.name] = listeners
        args = [
            f"--address={LOOPBACK}:{self.ctx.state.ports[self.head.name]}",
            f"--node-ip-address={LOOPBACK}",
            f"--temp-dir={self.head.temp_dir / 'w'}",
            *start_args(None, self.ctx.options.ray_cpus_per_node),
            *listeners,
        ]
        env = node_env(self.ctx.state.ray_token, self.head.node_extra_env)
        # Cluster mode, which `ray start` needs to join; explicit, since importing
        # unetflow (the launcher) would otherwise choose single-node mode.
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        launcher = [sys.executable, "-m", "unetflow.stack.ray_node"]
        self.ctx.record(self.name, _spawn_node(args, env, self.ctx, self.name, launcher))

    def healthy(self) -> bool:
        listeners = self.ctx.state.extra.get(self.name)
        if not listeners or not node_up(self.ctx, self.name):
            return False
        return port_open(arg_value(listeners, "--node-manager-port"))

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name, strays=lambda: pids_naming(self.head.temp_dir / "w"))

    def url(self) -> str:
        listeners = self.ctx.state.extra.get(self.name, [])
        port = arg_value(listeners, "--node-manager-port") if listeners else None
        return f"{LOOPBACK}:{port} (a node of {self.head.env()['RAY_ADDRESS']})"

    def env(self) -> dict[str, str]:
        return {}


def node_up(ctx: StackContext, name: str) -> bool:
    """Running and registered: `ray start --block` prints its hint only once the node
    joined (an open port alone can precede a start-up time-out)."""
    if not ctx.running(name):
        return False
    try:
        return "--block" in ctx.log(name).read_text(errors="replace")
    except OSError:
        return False


def _spawn_node(
    args: list[str],
    env: dict[str, str],
    ctx: StackContext,
    name: str,
    launcher: list[str] | None = None,
):
    cmd = [*(launcher or [RAY, "start"]), "--block", "--disable-usage-stats", *args]
    return spawn(cmd, env, ctx.log(name), ctx.root)
