"""Weight averaging on the default recipe: trained vs averaged weights in one run.

Usage:
    .venv/bin/python bench/bench_ema.py [--quick] [--budget-s S] [--threads N] [--out FILE]

One run of the default recipe (`bench_quality.recipe_config`) on the quality bench's
synthetic cells, scored on the test split through the served inference path at the
quality bench's score times (`score_times`, scoring off the clock). At each point it
scores the trained weights and weight averages (`unet_core.engine.WeightEma`) kept
alongside: decay 0.999 with the engine's warm-up (a horizon of ~1/10 of the steps so
far), and horizons of ~1/3 and ~1/30 of the steps. All of them see the same steps, so
the columns differ by the averaging only, whatever the machine's load. It also times
one `WeightEma.update` against one training step. Writes ``bench/results/ema_cpu.md``.
The benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: sibling modules

import quality_data
from bench_quality import recipe_config
from monai_reference import BudgetSpent, TrainClock, global_dice, score_times

from unet_core.data import read_manifest
from unet_core.engine import Hooks, WeightEma, fit, unwrap
from unet_core.package import Segmenter
from unetflow.builders import build_trainer, inference_spec
from unetflow.datasets import resolve_data
from unetflow.evaluation import predict_split

DECAY = 0.999  # the default (`unet_core.engine.config.EMA_DECAY`)
HORIZONS = {"1/3": 3, "1/30": 30}  # extra averages: horizon ~ steps so far / k


def averages(model: torch.nn.Module) -> dict[str, WeightEma]:
    """The averages kept next to the trained weights, by column name."""
    out = {f"EMA {DECAY}": WeightEma(model, DECAY)}
    for name, k in HORIZONS.items():
        ema = WeightEma(model, DECAY)
        ema.decay_at = lambda t, k=k: min(DECAY, (1 + t) / (1 + k + t))  # type: ignore[method-assign]
        out[f"EMA horizon {name} of the steps"] = ema
    return out


def run(prepared: Path, budget_s: float) -> tuple[list[tuple], list[str], str]:
    """Rows (train s, step, Dice per column), the column names and the recipe line."""
    cfg = recipe_config(prepared)
    # The engine's own average off: this bench keeps its averages next to the weights.
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"ema_decay": None})})
    spec = inference_spec(cfg, read_manifest(prepared))
    trainer = build_trainer(cfg, prepared, torch.device("cpu"), rank=0, world_size=1)
    trainer.cfg = trainer.cfg.model_copy(update={"log_every_steps": 1})
    emas = averages(unwrap(trainer.model))
    clock = TrainClock(budget_s, score_times(budget_s, 12, 5))
    rows: list[tuple] = []
    steps = 0

    def dice(model: torch.nn.Module) -> float:
        split = predict_split(Segmenter(model, cfg.model, spec), prepared, "test")
        return global_dice(split.preds, split.targets)

    def score() -> float:
        values = [dice(trainer.model)] + [dice(e.served()) for e in emas.values()]
        trainer.model.train()
        rows.append((steps, *values))
        return values[0]

    def on_step(step: int, loss: float) -> None:
        nonlocal steps
        steps += 1
        for ema in emas.values():
            ema.update()
        clock.maybe_score(score, steps)
        if clock.spent():
            raise BudgetSpent

    clock.start()
    trainer.hooks = Hooks(on_step=on_step)
    with contextlib.suppress(BudgetSpent):
        fit(trainer)
    clock.maybe_score(score, steps, force=True)
    timed = [(seconds, *row) for (seconds, _), row in zip(clock.points, rows, strict=True)]
    recipe = (
        f"batch {cfg.train.batch_size}, {cfg.train.steps_per_epoch} steps/epoch, "
        f"{cfg.train.epochs} epochs planned; {steps} steps in the budget"
    )
    return timed, ["trained", *emas], recipe


def summary(rows: list[tuple], names: list[str]) -> list[str]:
    """Per column, over the points after the first quarter of the steps: mean, lowest,
    largest change between neighbouring points, and the final Dice."""
    late = [r[2:] for r in rows if r[1] >= rows[-1][1] / 4]
    lines = [
        "| weights | mean Dice | lowest | largest neighbour change | final |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, name in enumerate(names):
        values = [r[i] for r in late]
        jumps = [abs(a - b) for a, b in itertools.pairwise(values)] or [0.0]
        lines.append(
            f"| {name} | {sum(values) / len(values):.4f} | {min(values):.4f} "
            f"| {max(jumps):.4f} | {values[-1]:.4f} |"
        )
    return lines


def update_cost(prepared: Path) -> str:
    """Milliseconds of one training step and of one `WeightEma.update` (recipe model)."""
    cfg = recipe_config(prepared)
    trainer = build_trainer(cfg, prepared, torch.device("cpu"), rank=0, world_size=1)
    model, ema = trainer.model, WeightEma(unwrap(trainer.model), DECAY)
    images, masks = next(iter(trainer.train_loader))

    def step() -> None:
        trainer.loss_fn(model(images), masks).backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    step()
    started = time.perf_counter()
    for _ in range(5):
        step()
    step_s = (time.perf_counter() - started) / 5
    started = time.perf_counter()
    for _ in range(100):
        ema.update()
    ema_s = (time.perf_counter() - started) / 100
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return (
        f"Cost: one `WeightEma.update` {ema_s * 1e3:.2f} ms vs one training step "
        f"{step_s * 1e3:.0f} ms ({ema_s / step_s:.2%}), {params:.2f} M parameters."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and budget (the test)")
    parser.add_argument("--budget-s", type=float, default=None, help="training seconds")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ema_cpu.md"))
    args = parser.parse_args(argv)
    budget = args.budget_s or (2.0 if args.quick else 120.0)  # the quality bench's budget
    n, side = (12, 48) if args.quick else (120, 128)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-ema-") as tmp:
        raw = quality_data.synthetic_folder(Path(tmp) / "raw", n, side)
        prepared, _ = resolve_data(Path(tmp), str(raw), 2, in_channels=1)
        rows, names, recipe = run(prepared, budget)
        cost = update_cost(prepared)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = "\n".join(
        [
            f"# Weight averaging: trained vs averaged weights, one run ({n} x {side}x{side} "
            f"synthetic cells, budget {budget:.0f} s, {args.threads} threads, load {load})",
            "",
            f"Recipe: {recipe}. Test Dice; summary over the points after the first "
            "quarter of the steps.",
            "",
            *summary(rows, names),
            "",
            cost,
            "",
            "| train s | step | " + " | ".join(names) + " |",
            "|---:|---:|" + "---:|" * len(names),
            *(
                f"| {r[0]:.1f} | {r[1]} | " + " | ".join(f"{d:.4f}" for d in r[2:]) + " |"
                for r in rows
            ),
        ]
    )
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
