"""`run_search`: one Ray Tune search over a validated space, tracked in MLflow, resumable.

Storage is deterministic (`<project>/.unetflow/tune/<name>` unless `storage_path` is
set), so `run_search(..., resume=True)` (`unetflow tune --resume NAME`) restores a
search whose driver died: finished trials are kept, unfinished and errored ones resume
from their last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from tune.search_config import (
    STATE_FILE,
    SearchConfig,
    SearchResult,
    default_storage_root,
    storage_root,
)
from tune.space import load_space
from unetflow.config import ExperimentConfig
from unetflow.errors import UsageError

__all__ = ["SearchConfig", "SearchResult", "resume_search", "run_search", "storage_root"]


def run_search(
    search: SearchConfig | str | Path,
    project_dir: Path,
    base: ExperimentConfig | None = None,
    data_dir: Path | None = None,
    resume: bool = False,
) -> SearchResult:
    """Run (or resume) a search and return the best config and the Pareto front.

    Args:
        search: a `SearchConfig`, or the path of a space YAML (defaults for the rest).
        project_dir: the project folder (MLflow store, default storage, relative data).
        base: the config the space modifies (default: the embedded defaults).
        data_dir: the prepared data set, or a raw images/ + masks/ folder (default:
            `base.data.path` under `project_dir`).
        resume: restore the search of the same name from its storage.
    """
    if not isinstance(search, SearchConfig):
        search = SearchConfig(space=str(search), name=Path(search).stem)
    project_dir = project_dir.resolve()
    base = base or ExperimentConfig()
    if search.epochs is not None:
        base = base.model_copy(
            update={"train": base.train.model_copy(update={"epochs": search.epochs})}
        )
    search = search.model_copy(update={"epochs": base.train.epochs})
    space = load_space(search.space, base)
    from unetflow.datasets import resolve_for

    # A raw images/ + masks/ folder is prepared once per content, as for training; bad
    # data fails now, with the path, rather than inside every trial.
    path = str(data_dir or base.data.path)
    data = base.model_copy(update={"data": base.data.model_copy(update={"path": path})})
    data_dir, _ = resolve_for(project_dir, data)
    from tune.runner import execute

    return execute(search, space, base, data_dir, project_dir, resume)


def resume_search(name: str, project_dir: Path, storage_path: str | None = None) -> SearchResult:
    """Resume the search `name` from its saved state (`unetflow tune --resume NAME`).

    Args:
        storage_path: where the search was stored (a folder or s3://...); default:
            `<project>/.unetflow/tune`.
    """
    from unetflow import storage

    root = storage_path or default_storage_root(project_dir)
    text = storage.read_text(storage.join(root, f"{name}.{STATE_FILE}"))
    if text is None:
        found = "?"  # listing a bucket is not worth its permissions here
        if not storage.is_remote(root):
            found = sorted(p.name.split(".")[0] for p in Path(root).glob(f"*.{STATE_FILE}"))
        raise UsageError(
            f"no search named {name!r} under {root}; searches there: {found or 'none'}"
        )
    state = json.loads(text)
    search = SearchConfig.model_validate(state["search"])
    base = ExperimentConfig.model_validate(state["base"])
    return run_search(search, project_dir, base, Path(state["data_dir"]), resume=True)
