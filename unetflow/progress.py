"""One progress display on the driver, fed by rank 0 through a small Ray actor.

Rank 0 posts its progress to a `ProgressBoard` actor fire-and-forget (no worker waits
on the driver); a daemon thread of the driver polls the board and draws one tqdm bar
over all steps, or, when stderr is not a terminal (CI, Prefect logs), prints a plain line
when an epoch ends, at most one every `PLAIN_EVERY_S` seconds (the last epoch always).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import ray

from unet_core.engine import EpochResult

POLL_S = 0.5  # how often the driver reads the board
PLAIN_EVERY_S = 30.0  # the least time between two plain lines (the last one always prints)


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The latest progress of a run: rank 0 merges updates in, the driver reads them."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def update(self, state: dict[str, Any]) -> None:
        self.state.update(state)

    def read(self) -> dict[str, Any]:
        return dict(self.state)


class ProgressFeed:
    """Rank 0's side: posts step, loss, epoch and validation Dice to the board."""

    def __init__(self, board: Any, epochs: int, steps_per_epoch: int) -> None:
        self.board, self.epochs, self.steps = board, epochs, steps_per_epoch
        self.epoch = 0
        self._post(total=epochs * steps_per_epoch, epochs=epochs)

    def started(self, epoch: int) -> None:
        """Training (re)starts at `epoch` (0-based): a resumed run's bar starts there."""
        self.epoch = epoch
        self._post(step=epoch * self.steps, epoch=epoch)

    def on_step(self, step: int, loss: float) -> None:
        self._post(step=self.epoch * self.steps + step + 1, loss=loss)

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epoch = result.epoch + 1
        update = {"step": self.epoch * self.steps, "epoch": self.epoch}
        update["loss"] = result.metrics["train_loss"]
        if result.validated and "val_dice" in result.metrics:
            update["val_dice"] = result.metrics["val_dice"]
        if result.last:
            update["done"] = True
        self._post(**update)

    def _post(self, **state: Any) -> None:
        self.board.update.remote(state)  # fire and forget: never wait on the driver


class ProgressDisplay:
    """The driver's side: a context manager that draws the board until the run ends.

    Args:
        board: a `ProgressBoard` actor handle.
        stream: where to draw (default stderr); a bar when it is a terminal.
        read: returns the board's state (default: the actor's `read`; tests pass a fake).
    """

    def __init__(
        self,
        board: Any,
        stream: TextIO | None = None,
        read: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.read = read or (lambda: ray.get(board.read.remote(), timeout=2 * POLL_S))
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._bar: Any = None
        self._printed: dict[str, Any] = {}  # the state of the last plain line
        self._last_line = -math.inf
        self._started: float | None = None
        self._first_step = 0

    def __enter__(self) -> ProgressDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * POLL_S)
        self._draw(final=True)
        if self._bar is not None:
            self._bar.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self._draw(final=False)

    def _draw(self, final: bool) -> None:
        try:
            state = self.read()
        except Exception:  # a busy or gone board only delays the display
            return
        if "total" not in state or "step" not in state:
            return
        if self.tty:
            self._draw_bar(state)
        else:
            self._draw_line(state, final)

    def _draw_bar(self, state: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=state["total"],
                initial=state["step"],
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                desc="train",
            )
        self._bar.set_postfix_str(_postfix(state), refresh=False)
        self._bar.update(state["step"] - self._bar.n)

    def _draw_line(self, state: dict[str, Any], final: bool) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started, self._first_step = now, state["step"]
        if state.get("epoch", 0) == self._printed.get("epoch", 0):
            return  # a line per finished epoch, never one for the same epoch twice
        if not final and now - self._last_line < PLAIN_EVERY_S and not state.get("done"):
            return
        self._last_line, self._printed = now, state
        eta = _eta(now - self._started, state["step"] - self._first_step, state)
        line = f"step {state['step']}/{state['total']} {_postfix(state)} eta {eta}"
        self.stream.write(line + "\n")
        self.stream.flush()


def _postfix(state: dict[str, Any]) -> str:
    parts = [f"epoch {state.get('epoch', 0)}/{state.get('epochs', '?')}"]
    if "loss" in state:
        parts.append(f"loss={state['loss']:.4f}")
    if "val_dice" in state:
        parts.append(f"val_dice={state['val_dice']:.4f}")
    return " ".join(parts)


def _eta(elapsed: float, done: int, state: dict[str, Any]) -> str:
    if done <= 0 or elapsed <= 0:
        return "?"
    seconds = int(elapsed / done * max(0, state["total"] - state["step"]))
    return f"{seconds // 60}m{seconds % 60:02d}s"
