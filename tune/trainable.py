"""The Tune trial: resolve the sampled config, train with the engine, report every
validation (every `train.val_every` epochs; schedulers such as ASHA count reports).

A single-worker trial trains in the trial process (`tune.trial.train_in_process`,
reporting through `ray.tune.report` after every validation). A trial whose config asks for
several workers (`scaling.num_workers > 1`) builds a Ray Train `TorchTrainer` inside the
trial (Train V2: `Tuner(trainer)` is gone) and forwards its reports to Tune.
"""

from __future__ import annotations

import pickle
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow.fs
import ray.tune

from tune.search_config import TrialSetup
from tune.space import ParamSpec, resolve_config
from tune.trial import model_cost, report_again, train_in_process, trial_device
from unet_core.engine import CHECKPOINT_FILE, load_checkpoint
from unetflow.config import ExperimentConfig, tracked_params

if TYPE_CHECKING:
    import torch

    from tune.mlflow_logging import TrialLogger


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable. `config` holds the sampled dotted keys."""
    base = ExperimentConfig.model_validate_json(setup.base)
    specs = {k: ParamSpec.model_validate(v) for k, v in setup.specs.items()}
    cfg = resolve_config(base, config, specs)
    data_dir = Path(setup.data_dir)
    ctx = ray.tune.get_context()
    logger = None
    if setup.tracking is not None:
        # Imported here: mlflow costs every trial process ~0.5 s of start-up, untracked too.
        from tune.mlflow_logging import TrialLogger

        logger = TrialLogger(setup.tracking, ctx.get_trial_id(), ctx.get_trial_name())
        logger.log_params({**tracked_params(cfg), **{f"sampled.{k}": v for k, v in config.items()}})
    costs = model_cost(cfg, data_dir, latency=setup.latency)
    if cfg.scaling.num_workers > 1:
        _fit_multi_worker(cfg, data_dir, costs, setup, ctx.get_trial_id(), logger)
    else:
        _fit_single_worker(cfg, data_dir, costs, logger)


def _fit_single_worker(
    cfg: ExperimentConfig, data_dir: Path, costs: dict[str, float], logger: TrialLogger | None
) -> None:
    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        if logger is not None:
            logger.log_epoch(metrics, int(metrics["epoch"]))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(checkpoint_dir))

    # A restored or restarted trial continues, not restarts. `get_storage` (a Ray developer
    # API) says where Ray wrote this trial's checkpoints: a local folder or a bucket.
    ctx = ray.tune.get_context()
    storage, recorded = ctx.get_storage(), ray.tune.get_checkpoint()
    folders = [storage.trial_fs_path]
    if recorded is None:  # only a trial Tune has no record of can have been renamed
        folders.append(original_folder(storage.trial_fs_path, ctx.get_trial_id()))
    resume = newest_state(
        recorded, storage.storage_filesystem, *folders, map_location=trial_device(cfg)
    )
    if resume is not None and logger is not None:
        logger.mark_resumed(int(resume.state["epoch"]))
    if resume is not None and resume.unreported:
        # Tune never took that epoch's report: without it its results (and the search's
        # summary) miss the epoch, and a trial with no epoch left would end on an older
        # one. MLflow has it already and skips it.
        report_again(cfg, resume.state, costs, report)
    train_in_process(cfg, data_dir, costs, report, None if resume is None else resume.state)
    if logger is not None:
        logger.finish()


class Resume(NamedTuple):
    """Where a restored trial continues from."""

    state: dict  # a checkpoint state (`load_checkpoint`)
    unreported: bool  # newer than Tune's record: Tune never took its report


# How Ray names a trial's checkpoint folders: `checkpoint_<index>`, counted up per report.
_CHECKPOINT_FOLDER = re.compile(r"checkpoint_(\d+)")
# What a checkpoint that does not load raises: no file yet (ENOENT), a truncated or
# foreign file (torch: RuntimeError, EOFError, UnpicklingError), no epoch (KeyError).
_UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, ValueError)


def trial_dirname(trial_id: str) -> str:
    """A trial's folder in the search's storage (Tune's default names embed every sampled
    value: paths too long for some filesystems)."""
    return f"trial_{trial_id}"


def original_folder(trial_path: str, trial_id: str) -> str:
    """The folder a trial wrote to before a restore renamed it (`trial_path` itself if it
    was not). A trial first scheduled after the killed driver's last state save has no
    record: resumed on the same cluster, Ray finds the old driver's staging copy of
    `trial_<id>` and names the folder `trial_<id>_<4 hex>`."""
    return posixpath.join(posixpath.dirname(trial_path.rstrip("/")), trial_dirname(trial_id))


def newest_state(
    recorded: ray.tune.Checkpoint | None,
    filesystem: pyarrow.fs.FileSystem,
    *trial_paths: str,
    map_location: torch.device | str = "cpu",
) -> Resume | None:
    """The state to resume a trial from: its newest whole checkpoint, not only Tune's record.

    Tune's record of a trial's checkpoints (what `get_checkpoint` hands a resumed search)
    is saved apart from the reports and can lag the newest one the trial wrote by a report:
    resuming from the record alone repeats an interval that was already checkpointed. So
    the trial's own folder is read too: a folder numbered after the recorded one whose
    checkpoint loads and holds a later epoch wins. Epochs decide, not folder numbers or
    times: a resumed trial numbers on from its record and rewrites the folders after it.
    A folder being written when the driver died does not load and is skipped. A recorded
    checkpoint from another trial's folder (PBT's exploit) is taken as it is.

    Args:
        recorded: the checkpoint Tune hands back (`ray.tune.get_checkpoint()`), or None.
        filesystem, trial_paths: where Ray wrote this trial's checkpoints (its folder now,
            and the one it had before a restore renamed it).
        map_location: where the chosen state's model weights go (`load_checkpoint`).

    Returns:
        The state and whether it is newer than the record, or None: start from scratch.
    """
    if recorded is not None and posixpath.dirname(recorded.path.rstrip("/")) not in trial_paths:
        # Another trial's checkpoint: PBT chose it.
        return Resume(_load(recorded, map_location), unreported=False)
    best = None if recorded is None else _load(recorded, map_location)
    unreported = False
    folders = [
        f for path in dict.fromkeys(trial_paths) for f in _folders_after(recorded, filesystem, path)
    ]
    for path in folders:
        try:
            state = _load(ray.tune.Checkpoint(path, filesystem), map_location)
        except _UNREADABLE:
            continue  # partial: being written when the trial died
        if best is None or int(state["epoch"]) > int(best["epoch"]):
            best, unreported = state, True
    return None if best is None else Resume(best, unreported)


def _folders_after(
    recorded: ray.tune.Checkpoint | None, filesystem: pyarrow.fs.FileSystem, trial_path: str
) -> list[str]:
    """The trial's checkpoint folders numbered after the recorded one (all without one)."""
    after = None if recorded is None else _folder_index(posixpath.basename(recorded.path))
    listing = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    return [
        info.path
        for info in listing
        if info.type == pyarrow.fs.FileType.Directory
        and (index := _folder_index(info.base_name)) is not None
        and index > (-1 if after is None else after)
    ]


def _folder_index(name: str) -> int | None:
    match = _CHECKPOINT_FOLDER.fullmatch(name)
    return None if match is None else int(match.group(1))


def _load(checkpoint: ray.tune.Checkpoint, map_location: torch.device | str) -> dict:
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(Path(folder) / CHECKPOINT_FILE, map_location=map_location)
    int(state["epoch"])  # a checkpoint without its epoch cannot be placed: KeyError
    return state


def _fit_multi_worker(
    cfg: ExperimentConfig,
    data_dir: Path,
    costs: dict[str, float],
    setup: TrialSetup,
    trial_id: str,
    logger: TrialLogger | None,
) -> None:
    """A data-parallel `TorchTrainer` inside the trial; its rank-0 reports reach Tune."""
    from ray.train import CheckpointConfig, RunConfig

    from unetflow.ray_tracking import EpochMetricsLogger
    from unetflow.ray_train import torch_trainer
    from unetflow.storage import ray_storage

    storage_path, filesystem = ray_storage(setup.storage)  # s3:// needs its filesystem
    callbacks = [_report_callback(costs)]
    if logger is not None and setup.tracking is not None:
        # Epoch metrics logged by the trainer's controller, not by rank 0.
        callbacks.append(EpochMetricsLogger(setup.tracking.uri, logger.run_id))
    run_config = RunConfig(
        # The same name on a restarted trial resumes the Ray Train run's checkpoint.
        name=f"train-{trial_id}",
        storage_path=storage_path,
        storage_filesystem=filesystem,
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        callbacks=callbacks,
    )
    trainer = torch_trainer(cfg, data_dir, run_config)
    trainer.fit()
    if logger is not None:
        logger.finish()


def _report_callback(costs: dict[str, float]) -> Any:
    """Ray's `TuneReportCallback`, with the trial's cost metrics added to every report."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class _WithCosts(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
            if not metrics[0].get("validated", 1):
                return  # a checkpoint between validations: nothing for a scheduler to judge
            super().after_report(run_context, [{**metrics[0], **costs}], checkpoint)

    return _WithCosts()
