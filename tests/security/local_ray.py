"""Start the project's local Ray (`ensure_ray`) and report what it listens on.

Run as a script by `test_ray_local.py`: prints one JSON line `{"address", "listeners"}`
(every LISTEN socket of this process and the Ray processes it started), then keeps Ray
up until stdin closes, so the test can try to connect meanwhile.
"""

from __future__ import annotations

import json
import sys

import psutil


def listeners() -> list[dict]:
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN:
                found.append({"process": name, "ip": conn.laddr.ip, "port": conn.laddr.port})
    return found


def main() -> None:
    from unetflow.ray_train import ensure_ray

    ensure_ray(num_cpus=1)
    # Imported only now, never above unetflow: unetflow turns Ray's token auth on before
    # Ray is first imported (a process that imports ray first runs without auth).
    import ray

    address = ray.get_runtime_context().gcs_address
    print(json.dumps({"address": address, "listeners": listeners()}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    ray.shutdown()


if __name__ == "__main__":
    main()
