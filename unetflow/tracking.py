"""MLflow tracking: where runs go, what they carry, how models are logged and registered.

The embedded default is a SQLite store and an artifact folder under
`<project>/.unetflow/`; `MLFLOW_TRACKING_URI` points everything at a real server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import DataType, Schema, TensorSpec
from mlflow.types.schema import ParamSchema, ParamSpec

from unet_core.data import read_manifest
from unetflow.serving import PACKAGE_ARTIFACT

# Executed by MLflow when the model loads (models from code), so no pickle is logged.
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")

TAG = "unetflow."  # prefix of every lineage tag
CONFIG_ARTIFACT = "config.yaml"  # the resolved config of a run; `unetflow lineage` reads it
# Opens the experiment on MLflow's model-training views, not its GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


# `scheme://user:password@host` and secret-looking query parameters in any logged URI.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^@\s]*@")
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&](?:password|passwd|pwd|token|secret|access_token|api_key|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|sig|signature)=)[^&#\s]*"
)
# Environment variables whose values are secrets, whatever the service.
_SECRET_ENV = re.compile(r"(?i)(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY)")
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with URI passwords, secret query parameters and secret env values masked.

    Applied to every string that goes to MLflow (params, tags, descriptions, the config
    artifact), so a storage path like `s3://key:secret@bucket` or a database URL with a
    password cannot leak even when a user puts one in a config.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['key']}{REDACTED}", text)
    for value in _secret_env_values():
        text = text.replace(value, REDACTED)
    return text


def _secret_env_values() -> list[str]:
    # Short values ("1", "true") would mask innocent text; real secrets are long.
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def redact_all(values: dict[str, str]) -> dict[str, str]:
    return {k: redact(v) for k, v in values.items()}


def tracking_uri(project_dir: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else the embedded SQLite store of the project."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = project_dir.resolve() / ".unetflow"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def ensure_experiment(name: str, project_dir: Path) -> str:
    """Experiment id of `name`, creating it (artifacts beside the embedded store)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        for key, value in EXPERIMENT_KIND.items():
            # A kind chosen in the UI stays; only experiments without one get ours.
            if key not in experiment.tags:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (project_dir.resolve() / ".unetflow" / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def git_state(project_dir: Path) -> dict[str, str]:
    """Commit and dirty flag of the project's git checkout ('unknown' outside git)."""

    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def lineage_tags(values: dict[str, str | None]) -> dict[str, str]:
    """Prefix lineage values as tags, dropping unknown ones."""
    return {f"{TAG}{k}": redact(str(v)) for k, v in values.items() if v is not None}


class RunTerminated(SystemExit):
    """SIGTERM arrived during a tracked run (exit status 128 + signal, as shells report)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise RunTerminated(128 + signum)


def _is_kill(exc: BaseException) -> bool:
    # Prefect raises its TerminationSignal (a BaseException) when a runner cancels a flow
    # run with SIGTERM; matched by name so tracking does not import Prefect.
    return isinstance(exc, SystemExit | KeyboardInterrupt) or any(
        cls.__name__ == "TerminationSignal" for cls in type(exc).__mro__
    )


def unfinished_run(experiment_id: str, ray_run_name: str) -> str | None:
    """The newest run of this Ray run that did not finish (its process was killed, or
    it failed), if any.

    A rerun resumes the Ray run from its last checkpoint, so it continues this MLflow
    run too: one run per training, with every epoch's metrics, instead of a run left
    RUNNING forever by a SIGKILL and a second one holding only the epochs after it.
    """
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG}ray_run_name` = '{ray_run_name}' "
        "and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


@contextmanager
def tracked_run(**start_run_kwargs: object) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run` that always ends truthfully: FINISHED, FAILED or KILLED.

    SIGTERM, Ctrl+C and Prefect's cancellation end the run KILLED and re-raise, so the
    process exits non-zero and no run is left RUNNING. Ray's driver installs its own
    SIGTERM handler (`sys.exit(15)`) at `ray.init`, so any SystemExit counts as a kill.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    run = mlflow.start_run(**start_run_kwargs)
    try:
        yield run
    except BaseException as exc:
        mlflow.end_run("KILLED" if _is_kill(exc) else "FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def model_signature(in_channels: int, spatial_dims: int) -> ModelSignature:
    """Any batch and image size: only the channel axis is fixed. The params schema lists
    what `UNetSegmenter.predict` takes (MLflow drops params a signature does not name)."""
    spatial = (-1,) * spatial_dims
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, in_channels, *spatial))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *spatial))]),
        params=ParamSchema(
            [
                ParamSpec("tta", DataType.boolean, False),
                ParamSpec("threshold", DataType.double, None),  # None: the package's
                # The inputs' voxel size; [] takes them as they come (no resampling).
                ParamSpec("spacing", DataType.double, [], shape=(-1,)),
            ]
        ),
    )


def log_model(
    package: Path, input_example: np.ndarray, in_channels: int, spatial_dims: int, step: int = 0
) -> ModelInfo:
    """Log the model package as a pyfunc model in the active run.

    MLflow links the run's metrics of epoch `step` to the model: pass the best epoch, or
    the model page shows another epoch's numbers.
    """
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_ENTRY),  # models from code: nothing pickled
        artifacts={PACKAGE_ARTIFACT: str(package)},
        signature=model_signature(in_channels, spatial_dims),
        input_example=input_example,
        step=step,
    )


def log_dataset(data_dir: Path | str, version: str) -> None:
    """The prepared data set as the run's input: the data version (DVC md5) as its digest,
    the folder or URI as its source, the split sizes as tags."""
    manifest = read_manifest(data_dir)
    spatial = (-1,) * manifest.spatial_dims
    schema = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, manifest.in_channels, *spatial), "image"),
            TensorSpec(np.dtype(np.int64), (-1, *spatial), "mask"),
        ]
    )
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and warns that the two "compete".
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        source = resolve_dataset_source(redact(str(data_dir)))
    name = str(data_dir).rstrip("/").rsplit("/", 1)[-1]  # a folder's name, a prefix's last part
    dataset = MetaDataset(source, name=name, digest=version, schema=schema)
    sizes = {f"{split}_samples": str(manifest.count(split)) for split in manifest.splits}
    mlflow.log_input(dataset, context="training", tags=sizes)


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    became_champion: bool


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version `alias` points at, or None when no version holds it."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(project_dir: Path, name: str, alias: str) -> str | None:
    """The version `alias` of model `name` points at now, in the project's tracking store."""
    return alias_version(MlflowClient(tracking_uri=tracking_uri(project_dir)), name, alias)


def register(
    model_uri: str,
    name: str,
    alias: str,
    tags: dict[str, str],
    description: str = "",
    passes_gate: bool = True,
) -> Registration:
    """Register a version; it takes `alias` only when no version holds it yet and it
    passed the absolute quality gate (`passes_gate`).

    Replacing an existing champion is a promotion decision (`unetflow promote`), never
    a side effect of training.
    """
    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags=redact_all(tags))
    if description:
        client.update_model_version(name, version.version, description=redact(description))
    became = passes_gate and alias_version(client, name, alias) is None
    if became:
        client.set_registered_model_alias(name, alias, version.version)
    return Registration(name, str(version.version), became)
