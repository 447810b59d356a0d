"""`ray start` for a node that joins a cluster on this machine and listens on loopback only.

Run as `python -m unetflow.stack.ray_node ARGS` with `ray start`'s own arguments.

Ray binds a node's listeners (raylet, object manager, dashboard agent, runtime-env
agent) to 127.0.0.1 only when the node's IP is exactly "127.0.0.1"; any other IP, a
loopback one such as 127.0.0.3 included, makes them listen on all interfaces
(`GrpcServer::Run`, `listen_to_localhost_only = node_manager_address == "127.0.0.1"`;
`ray/dashboard/agent.py`). But `ray start` rewrites a joining node's "127.0.0.1" (and
its head address) to the machine's outward IP (`services.resolve_ip_for_localhost`),
and skips the rewrite only in single-node mode, in which it refuses to join a cluster.
Ray itself runs several nodes on one IP (`ray.cluster_utils.Cluster`), so the node is
started here by `ray start` with that one rewrite left out: every other check and
default of `ray start` stays Ray's.
"""

from __future__ import annotations

import sys

from ray._private import services
from ray.scripts import scripts


def _unchanged(host: str) -> str:
    return host


def main(argv: list[str]) -> None:
    # `ray start` looks the function up on the module at call time: this replaces it.
    services.resolve_ip_for_localhost = _unchanged
    sys.argv = ["ray", "start", *argv]
    scripts.main()


if __name__ == "__main__":
    main(sys.argv[1:])
