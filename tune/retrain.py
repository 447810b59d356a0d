"""Retrain the chosen config on train+val and register it with its search provenance."""

from __future__ import annotations

from pathlib import Path

from tune.search_config import SearchResult
from unet_core.data import PreparedStore, read_manifest, write_case, write_manifest


def trainval_dataset(data_dir: Path, out_dir: Path) -> Path:
    """A prepared set whose `train` split is train+val; `val` and `test` are kept.

    `val` stays for monitoring only (it is now also trained on); the honest number is
    the test split, which `train_and_register` reports. The train copy of a val case is
    named `<stem>.trainval`, as stems are unique in a prepared set. Cases are copied one
    at a time.
    """
    data = PreparedStore(data_dir)
    cases = []
    for case in data.manifest.cases:
        image, mask = data.load_case(case.stem)
        copies = [(case.stem, case.split)]
        if case.split == "val":
            copies.append((f"{case.stem}.trainval", "train"))
        for stem, split in copies:
            geometry = (case.spacing, case.affine, data.manifest.chunks)
            cases.append(write_case(out_dir, stem, split, image, mask, *geometry))
    meta = {**data.manifest.meta, "derived": "train+val"}
    write_manifest(out_dir, cases, data.manifest.chunks, meta)
    return out_dir


def retrain_best(result: SearchResult, project_dir: Path, data_dir: Path) -> object:
    """Train `result.best_config` on train+val with Ray Train and register a new version.

    Returns:
        The `unetflow.training.TrainReport` (registered name, version, test metrics).
    """
    from unetflow.storage import is_remote
    from unetflow.training import train_and_register

    # Beside the search when it is a local folder; a bucket gets no local data folder.
    parent = project_dir / ".unetflow" / "tune"
    if not is_remote(result.storage_path):
        parent = Path(result.storage_path).parent
    out = parent / f"{result.name}-trainval-data"
    trainval = trainval_dataset(data_dir, out)
    cfg = result.best_config
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(trainval)})})
    lineage = {
        "search_name": result.name,
        "trial_id": result.best_trial_id,
        "search_parent_run_id": result.parent_run_id,
        "trained_on": "train+val",
    }
    version = read_manifest(trainval).meta.get("data_version") or "trainval"
    return train_and_register(cfg, project_dir, str(version), lineage)
