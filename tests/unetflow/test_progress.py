"""The driver's progress display: a bar on a terminal, sparse plain lines elsewhere."""

from __future__ import annotations

import io

from unetflow.progress import ProgressDisplay


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _states() -> list[dict]:
    base = {"total": 30, "epochs": 3}
    return [
        {**base, "step": 0, "epoch": 0},
        {**base, "step": 7, "epoch": 0, "loss": 0.9},
        {**base, "step": 10, "epoch": 1, "loss": 0.8, "val_dice": 0.5},
        {**base, "step": 20, "epoch": 2, "loss": 0.7, "val_dice": 0.6},
        {**base, "step": 30, "epoch": 3, "loss": 0.6, "val_dice": 0.7, "done": True},
    ]


def _show(stream: io.StringIO) -> str:
    """Draws each state once, as the display's thread would, the last one as the final."""
    states = iter(_states())
    display = ProgressDisplay(None, stream, read=lambda: next(states))
    for _ in range(4):
        display._draw(final=False)
    display._draw(final=True)
    if display._bar is not None:
        display._bar.close()
    return stream.getvalue()


def test_terminal_gets_one_bar_with_epoch_loss_dice_and_eta() -> None:
    out = _show(_Terminal())
    assert "30/30" in out and "epoch 3/3 loss=0.6000 val_dice=0.7000" in out
    assert out.count("\n") <= 1  # one bar redrawn in place (\r), not a line per update


def test_plain_lines_at_most_every_30_s_and_the_last_epoch_always() -> None:
    out = _show(io.StringIO()).splitlines()
    # epoch 1 prints; epoch 2 comes within 30 s of it; the last epoch always prints
    assert [line.split(" eta ")[0] for line in out] == [
        "step 10/30 epoch 1/3 loss=0.8000 val_dice=0.5000",
        "step 30/30 epoch 3/3 loss=0.6000 val_dice=0.7000",
    ]
