"""Ray listener ports (the stack's and the test cluster's): no listener inside a
worker-port range, none shared."""

from __future__ import annotations

import pytest

from unetflow.stack import ray as rc


def _ports(args: list[str]) -> tuple[list[int], range]:
    values = dict(zip(args[::2], args[1::2], strict=True))
    low, high = int(values.pop("--min-worker-port")), int(values.pop("--max-worker-port"))
    return [int(v) for v in values.values()], range(low, high + 1)


def test_listeners_avoid_every_worker_range_of_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # Free ports as the OS hands them out can land inside a range drawn just before:
    # Ray then refuses to start ("port ... used by other components").
    draws = iter([5000, 5010, 5020, 7000, 5030, *range(7001, 7008), *range(8000, 8100)])
    monkeypatch.setattr(rc, "free_port", lambda: next(draws))
    taken = {6000}  # the GCS port
    head, head_range = _ports(rc.port_args(head=True, taken=taken))
    worker, worker_range = _ports(rc.port_args(head=False, taken=taken))

    listeners = [6000, *head, *worker]
    assert len(set(listeners)) == len(listeners)
    assert not set(listeners) & (set(head_range) | set(worker_range))
    assert not set(head_range) & set(worker_range)
    assert len(head_range) == len(worker_range) == rc.WORKER_PORTS
