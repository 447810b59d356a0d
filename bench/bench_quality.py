"""Time-to-Dice: unetflow's default recipe against a MONAI reference pipeline.

Usage:
    .venv/bin/python bench/bench_quality.py [--quick] [--sets synthetic,mni152,folder]
        [--data FOLDER] [--data-dims 2|3] [--budget-s S] [--threads N] [--out FILE]

Data sets (prepared once by the project's own folder preparation, so both pipelines
see the same split and score the same test cases):
  synthetic  realistic 2D cells (`bench/quality_data.py`), 128x128: Otsu Dice ~0.75
  mni152     nilearn's MNI152 T1 template (2 mm), white matter = WM probability > 0.5,
             12 axial slabs of 8 slices (3D cases), whole slabs per split (8/2/2)
  folder     any labelled images/ + masks/ folder (--data), binary masks

Pipelines, in this process, one after the other, under the same `torch.set_num_threads`
and the same training budget (`--budget-s`):
  reference  `bench/monai_reference.py`: BasicUNet, DiceCELoss, dictionary transforms,
             random 96x96 crops, Adam 1e-3, batch 8 (3D: 96x96x16, batch 2)
  unetflow   what `unetflow train --set data.path=FOLDER` trains (`recipe_config`), run
             with `build_trainer` + `fit`, scored through the served inference path
             between optimizer steps (an `on_step` hook), as the reference is; what is
             scored is what a checkpoint would serve at that step (the weight average
             with `train.ema_decay`, the default)

Each is scored on the test split at the first optimizer step after each time of one
schedule, the same for both: every budget/12 training seconds, plus an early-dense run
budget/12 x 2^(-k/2), k = 1..10 (`score_times`), so a plateau reached within the first
interval is timed to a factor of about 1.4, not to a whole interval (with budget/12
alone both pipelines first reached the MNI152 plateau at their second score: a ratio
of about 1 by construction). Scoring time is off the clock. Dice is global over the
test split (what unetflow logs as test_dice), from one function for both. The reference's plateau is the mean Dice of its last 3
points; the table gives the training seconds each pipeline first reached it and the
ratio (goal: unetflow <= 0.5x the reference's time, and a final Dice >= 0.005 above).
The benchmark reports; it asserts nothing. Writes ``bench/results/quality_cpu.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: sibling modules

import quality_data
from monai_reference import BudgetSpent, TrainClock, global_dice, score_times, train_reference

from unet_core.data import DataError, PreparedDataset, read_manifest
from unet_core.engine import Hooks, fit
from unet_core.package import Segmenter
from unetflow.builders import build_trainer, inference_spec
from unetflow.config import ExperimentConfig, load_config
from unetflow.datasets import resolve_data
from unetflow.evaluation import predict_split
from unetflow.plan import planned

PLATEAU_POINTS = 3  # the reference's plateau: mean Dice of its last this-many points
SCORES_PER_BUDGET = 12  # score at least this often per training budget
EARLY_HALVINGS = 5  # plus 10 early points down to 1/32 of the first interval (see score_times)
GOAL_RATIO, GOAL_GAIN = 0.5, 0.005  # unetflow's time to the plateau, final Dice margin


@dataclass(frozen=True)
class SetSpec:
    """One data set: how to write its raw folder, its dims, and its training budget."""

    name: str
    description: str
    dims: int
    budget_s: float


def recipe_config(prepared_dir: Path) -> ExperimentConfig:
    """The config `unetflow train --set data.path=FOLDER` trains on this prepared set:
    the embedded defaults, the data's dims and channels, and what `unetflow plan`
    derives from the data's fingerprint for every other unset setting (the same
    `planned` call as `train_and_register`)."""
    manifest = read_manifest(prepared_dir)
    overrides: dict[str, object] = {"data.path": str(prepared_dir)}
    if manifest.spatial_dims != 2:
        overrides["model.spatial_dims"] = manifest.spatial_dims
    if manifest.in_channels != 1:
        overrides["model.in_channels"] = manifest.in_channels
    return planned(prepared_dir.parent, load_config(None, overrides))[0]


def run_unetflow(prepared: Path, clock: TrainClock) -> list[tuple[float, float]]:
    """Train the default recipe until its epochs end or the budget is spent.

    Scored and stopped between optimizer steps, as the reference is (an `on_step` hook
    after every step: the hook's cadence only, the training is the recipe's), so a long
    epoch does not round the time to a plateau up to the epoch's end."""
    cfg = recipe_config(prepared)
    spec = inference_spec(cfg, read_manifest(prepared))
    clock.start()
    trainer = build_trainer(cfg, prepared, torch.device("cpu"), rank=0, world_size=1)
    trainer.cfg = trainer.cfg.model_copy(update={"log_every_steps": 1})
    steps = 0

    def score() -> float:
        # What a checkpoint would serve now (the weight average when the recipe keeps
        # one), through the served inference path.
        segmenter = Segmenter(trainer.served_model(), cfg.model, spec)
        split = predict_split(segmenter, prepared, "test")
        trainer.model.train()  # inference left it in eval mode, mid-epoch
        return global_dice(split.preds, split.targets)

    def on_step(step: int, loss: float) -> None:
        nonlocal steps
        steps += 1
        clock.maybe_score(score, steps)
        if clock.spent():
            raise BudgetSpent  # hooks may raise to stop; the curve is what we keep

    trainer.hooks = Hooks(on_step=on_step)
    with contextlib.suppress(BudgetSpent):
        fit(trainer)
    clock.maybe_score(score, steps, force=True)
    return clock.points


def first_reach(points: list[tuple[float, float]], level: float) -> float | None:
    return next((s for s, dice in points if dice >= level), None)


def compare(name: str, curves: dict[str, list[tuple[float, float]]]) -> dict[str, object]:
    """Plateau, times to reach it, ratio and final Dice of one set."""
    ref, ours = curves["reference"], curves["unetflow"]
    plateau = sum(d for _, d in ref[-PLATEAU_POINTS:]) / len(ref[-PLATEAU_POINTS:])
    t_ref, t_ours = first_reach(ref, plateau), first_reach(ours, plateau)
    ratio = t_ours / t_ref if t_ours is not None and t_ref else None
    gain = ours[-1][1] - ref[-1][1]
    met = ratio is not None and ratio <= GOAL_RATIO and gain >= GOAL_GAIN
    return {
        "set": name,
        "plateau": plateau,
        "t_ref": t_ref,
        "t_ours": t_ours,
        "ratio": ratio,
        "final_ref": ref[-1][1],
        "final_ours": ours[-1][1],
        "gain": gain,
        "goal": "met" if met else "not met",
    }


def _num(value: float | None, fmt: str, missing: str = "not reached") -> str:
    return missing if value is None else format(value, fmt)


def curve_table(spec: SetSpec, curves: dict[str, list[tuple[float, float]]], info: str) -> str:
    lines = [
        f"### {spec.name}: {spec.description}",
        "",
        info,
        "",
        "| pipeline | train s | test Dice |",
        "|---|---:|---:|",
    ]
    for pipeline, points in curves.items():
        lines += [f"| {pipeline} | {s:.1f} | {d:.4f} |" for s, d in points]
    return "\n".join(lines)


def summary_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| set | reference plateau Dice | reference s to plateau | unetflow s to plateau "
        "| ratio unetflow/reference | final Dice reference | final Dice unetflow "
        "| unetflow - reference | goal (<= 0.5x time, >= +0.005) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['plateau']:.4f} | {_num(r['t_ref'], '.1f')} "
            f"| {_num(r['t_ours'], '.1f')} | {_num(r['ratio'], '.2f', '-')} "
            f"| {r['final_ref']:.4f} | {r['final_ours']:.4f} | {r['gain']:+.4f} | {r['goal']} |"
        )
    return "\n".join(lines)


def write_raw(spec: SetSpec, root: Path, args: argparse.Namespace) -> Path:
    """The set's raw images/ + masks/ folder."""
    if spec.name == "folder":
        return Path(args.data).resolve()
    if spec.name == "synthetic":
        n, side = (12, 48) if args.quick else (120, 128)
        return quality_data.synthetic_folder(root / "raw-synthetic", n, side)
    crop = 32 if args.quick else None
    return quality_data.mni152_folder(root / "raw-mni152", resolution=2, crop_xy=crop)


def run_set(spec: SetSpec, root: Path, args: argparse.Namespace) -> tuple[str, dict]:
    """Prepare one set, train both pipelines on it, return its curve table and summary."""
    raw = write_raw(spec, root, args)
    prepared, _ = resolve_data(root, str(raw), spec.dims, in_channels=1)
    manifest = read_manifest(prepared)
    test = PreparedDataset(prepared, "test", normalize=False)
    test_cases = [test.raw(i) for i in range(len(test))]
    train = PreparedDataset(prepared, "train", normalize=False)
    train_cases = [train.raw(i) for i in range(len(train))]
    times = score_times(spec.budget_s, SCORES_PER_BUDGET, EARLY_HALVINGS)
    curves = {}
    for pipeline in ("reference", "unetflow"):
        clock = TrainClock(spec.budget_s, times)
        started = time.perf_counter()
        if pipeline == "reference":
            curves[pipeline] = train_reference(train_cases, test_cases, spec.dims, clock)
        else:
            curves[pipeline] = run_unetflow(prepared, clock)
        wall = time.perf_counter() - started
        print(f"{spec.name}/{pipeline}: {len(clock.points)} points, {wall:.0f} s", flush=True)
    counts = {k: manifest.count(k) for k in manifest.splits}
    shapes = sorted({c.shape for c in manifest.cases})
    info = (
        f"{sum(counts.values())} cases {counts}, shapes {shapes[:3]}; test stems "
        f"{list(manifest.stems('test'))[:4]}; budget {spec.budget_s:.0f} s per pipeline."
    )
    return curve_table(spec, curves, info), compare(spec.name, curves)


def refuse(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2, nothing written."""
    print(f"bench_quality.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def set_specs(args: argparse.Namespace) -> list[SetSpec]:
    """The requested sets with their budgets (`--budget-s` overrides every default)."""
    quick = args.quick
    known = {
        "synthetic": SetSpec(
            "synthetic",
            "realistic 2D cells, " + ("12 x 48x48" if quick else "120 x 128x128"),
            2,
            2 if quick else 120,
        ),
        "mni152": SetSpec(
            "mni152",
            "MNI152 T1 (2 mm), white matter, 8-slice axial slabs (3D)"
            + (", central 32x32 window" if quick else ""),
            3,
            2 if quick else 180,
        ),
        "folder": SetSpec("folder", f"{args.data}", args.data_dims, 2 if quick else 150),
    }
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        refuse(f"--sets: unknown set(s) {unknown}; choose from {sorted(known)}")
    if "folder" in names and not args.data:
        refuse("--sets folder needs --data FOLDER (a folder with images/ and masks/)")
    if args.budget_s is not None:
        return [
            SetSpec(k.name, k.description, k.dims, args.budget_s) for k in map(known.get, names)
        ]
    return [known[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and budgets (the test)")
    parser.add_argument("--sets", default=None, help="comma list of synthetic,mni152,folder")
    parser.add_argument("--data", default=None, help="set 'folder': images/ + masks/ folder")
    parser.add_argument("--data-dims", type=int, choices=(2, 3), default=2, help="its dims")
    parser.add_argument("--budget-s", type=float, default=None, help="training s per pipeline")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work", default=None, help="folder for raw and prepared data")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality_cpu.md"))
    args = parser.parse_args(argv)
    if args.sets is None:
        args.sets = "synthetic,mni152" + (",folder" if args.data else "")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    specs = set_specs(args)
    torch.set_num_threads(args.threads)  # both pipelines, same threads
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        root = Path(args.work or tmp).resolve()
        try:
            results = [run_set(spec, root, args) for spec in specs]
        except DataError as err:  # a --data folder the project cannot prepare
            refuse(str(err))
    header = (
        f"# Time to Dice: unetflow default recipe vs MONAI reference "
        f"({'quick' if args.quick else 'full'}, {args.threads} threads, torch "
        f"{torch.__version__}, {os.cpu_count()} CPUs)\n\n"
        f"Plateau = mean test Dice of the reference's last {PLATEAU_POINTS} points; "
        "times are training seconds (scoring excluded). Both pipelines are scored at "
        f"the first step after each of: every budget/{SCORES_PER_BUDGET} s, plus "
        f"budget/{SCORES_PER_BUDGET} x 2^(-k/2) s for k = 1..{2 * EARLY_HALVINGS} "
        "(early-dense, so the time to an early plateau is resolved).\n"
    )
    text = "\n\n".join(
        [header, "## Summary", summary_table([r for _, r in results])]
        + ["## Curves"]
        + [table for table, _ in results]
    )
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
