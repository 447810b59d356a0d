"""The experiment configuration: one typed object, validated once at the edge.

Every entry point (CLI, Prefect parameters, Tune trials) parses into `ExperimentConfig`;
the library below receives typed objects, never dicts.
"""

from __future__ import annotations

import hashlib
import json
from math import inf
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from unet_core.augment import AugmentConfig
from unet_core.data.node_cache import DEFAULT_NODE_CACHE_GB
from unet_core.data.normalization import Normalization
from unet_core.data.streaming import FOREGROUND_FRACTION
from unet_core.engine import OptimConfig, SchedulerConfig, TrainConfig
from unet_core.losses import LossConfig
from unet_core.models import ModelConfig, get_model_config
from unetflow.uris import check_location


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that says what to change."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    """Which prepared data set to train on, and how to augment it."""

    model_config = ConfigDict(title="Data")

    path: str = Field(
        "data/prepared",
        description="prepared data set (manifest.json + cases/): a folder relative to the "
        "project, or s3://bucket/prefix that every worker reads itself; or a raw folder "
        "with images/ + masks/ (prepared on the fly)",
    )
    version: str | None = Field(
        None, description="expected data version (DVC md5 of the prepared data); none: any"
    )
    augment: AugmentConfig = Field(
        AugmentConfig(), description="random transforms of the training samples"
    )
    patch_size: tuple[int, ...] | None = Field(
        None,
        description="training patch (H, W) or (D, H, W), streamed per worker from the "
        "chunked arrays; validation then slides this window over whole cases. "
        "None: whole images (all cases must share one shape)",
    )
    foreground_fraction: float = Field(
        FOREGROUND_FRACTION,
        ge=0,
        le=1,
        description="share of patches centred on a foreground voxel (nnU-Net's 1/3)",
    )
    cache_mb: float = Field(
        256, gt=0, description="per-process LRU of decoded cases, MB (bounds worker memory)"
    )
    target_spacing: tuple[float, ...] | None = Field(
        None,
        description="voxel size per spatial axis a raw data.path folder is resampled to "
        "when prepared on the fly (images linear, masks nearest); a prepared set must have "
        "been prepared with the same one. None: keep each case's own spacing",
    )
    node_cache_dir: str | None = Field(
        None,
        description="local folder where each node keeps the cases it read from s3://, "
        "shared by its workers; empty: the system temp folder's unetflow-node-cache-UID on "
        "each node",
    )
    node_cache_gb: float = Field(
        DEFAULT_NODE_CACHE_GB,
        ge=0,
        allow_inf_nan=False,
        description="bound of the node cache on each node's disk, GB; 0 turns it off "
        "(every worker then reads from storage)",
    )
    normalization: Normalization = Field(
        Normalization(),
        description="intensity normalisation: dataset (train mean/std), per_image, or ct "
        "(clip window + foreground mean/std); the plan picks it from the data",
    )

    @field_validator("node_cache_dir")
    @classmethod
    def _local_folder(cls, value: str | None) -> str | None:
        # The cache is node-local by design: a URI or a relative path (which would land
        # in each worker's own working folder) is refused here, before any worker starts.
        if value is not None and ("://" in value or not Path(value).is_absolute()):
            raise ValueError(
                f"node_cache_dir {value!r} must be an absolute local folder, "
                "e.g. /local_nvme/unetflow-cache"
            )
        return value


class ScalingSettings(_Frozen):
    """How many Ray Train workers, and what each one holds."""

    model_config = ConfigDict(title="Scaling (Ray Train)")

    num_workers: int = Field(2, ge=1, description="Ray Train workers (data-parallel ranks)")
    use_gpu: bool = Field(False, description="one or more GPUs per worker")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved per worker")
    gpus_per_worker: float = Field(
        1, ge=0, description="GPUs per worker, used when use_gpu is true"
    )
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="extra custom resources, e.g. {'trainer_node': 1}"
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement group strategy of the workers"
    )


class CheckpointSettings(_Frozen):
    """Where checkpoints go and how failures resume from them."""

    model_config = ConfigDict(title="Checkpoints")

    storage_path: str | None = Field(
        None,
        description="Ray Train storage: a folder or s3://bucket/prefix; "
        "none: .unetflow/ray_results in the project folder",
    )
    storage_shared: bool = Field(
        False,
        description="storage_path is a folder every node mounts (NFS): allow it on a "
        "multi-node cluster, where a local folder is refused",
    )
    num_to_keep: int = Field(2, ge=1, description="best checkpoints kept (the latest is kept too)")
    every_epochs: int | None = Field(
        5,
        ge=1,
        description="write a checkpoint every N epochs; none: only by time, new bests and "
        "the last epoch (a new best and the last epoch are always written)",
    )
    every_minutes: float | None = Field(
        None,
        gt=0,
        description="also write one when this many minutes passed since the last; none: off. "
        "A crash repeats at most one interval",
    )
    max_failures: int = Field(
        2, ge=-1, description="worker-group restarts from the last checkpoint"
    )

    @field_validator("storage_path")
    @classmethod
    def _storage_location(cls, value: str | None) -> str | None:
        return None if value is None else check_location(value)


class TrackingSettings(_Frozen):
    """Where runs are logged and how versions are crowned: the one home of these defaults
    (training, promotion, rollback, the CLI and the flows all read them from here)."""

    model_config = ConfigDict(title="Tracking (MLflow)")

    experiment: str = Field("unetflow", description="MLflow experiment of the runs")
    registered_model: str = Field("unet-seg", description="registered MLflow model name")
    champion_alias: str = Field("champion", description="alias of the version in service")
    previous_alias: str = Field(
        "previous-champion", description="alias of the champion before the last promotion"
    )
    min_dice: float = Field(
        0.5, ge=0, le=1, description="test Dice a version needs to become champion"
    )
    margin: float = Field(
        0.0,
        gt=-1,
        lt=1,
        description="a candidate replaces the champion when the 95% CI lower bound of its "
        "paired Dice gain is above this",
    )


# The quick-run / CLI architecture: small enough to train on a laptop CPU.
DEFAULT_MODEL = get_model_config("unet", base_channels=16, depth=3)


class ExperimentConfig(_Frozen):
    """One training run: data, model, loss, optimisation, scaling, checkpoints, tracking."""

    model_config = ConfigDict(title="Experiment")

    name: str = Field("unet-seg", pattern=r"^[A-Za-z0-9_.-]+$", description="run name prefix")
    plan: bool = Field(
        True,
        description="derive the settings this config leaves unset (patch, batch, depth, "
        "pooling, normalisation, steps, epochs) from the data's fingerprint (unetflow plan)",
    )
    data: DataConfig = Field(DataConfig(), description="data set and augmentation")
    # A value default, not a default_factory: the parameter schema (the UI form) shows it.
    model: ModelConfig = Field(DEFAULT_MODEL, description="architecture")
    loss: LossConfig = Field(LossConfig(), description="loss function")
    optim: OptimConfig = Field(OptimConfig(), description="optimizer")
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description="learning-rate schedule")
    train: TrainConfig = Field(TrainConfig(), description="training loop and early stopping")
    scaling: ScalingSettings = Field(ScalingSettings(), description="Ray Train workers")
    checkpoint: CheckpointSettings = Field(
        CheckpointSettings(), description="checkpoint storage and fault tolerance"
    )
    tracking: TrackingSettings = Field(
        TrackingSettings(), description="MLflow experiment and registry"
    )

    @field_validator("model", mode="wrap")
    @classmethod
    def _model_from_preset(cls, value: Any, handler: Any) -> Any:
        # YAML says `model: {preset: unet, depth: 3}`: start from the preset, then override.
        if isinstance(value, dict) and "preset" in value:
            overrides = {k: v for k, v in value.items() if k != "preset"}
            return handler(get_model_config(value["preset"], **overrides))
        if not isinstance(value, dict):
            return handler(value)
        # A partial section (`--set model.depth=2`) overrides the project's default model,
        # not ModelConfig's class defaults (which would silently double its width). Only
        # the keys given count as set: the planner fills the others (`unetflow.plan`).
        model = handler({**DEFAULT_MODEL.model_dump(exclude_unset=True), **value})
        given = set(value) & set(ModelConfig.model_fields)
        return ModelConfig.model_construct(_fields_set=given, **dict(model))

    @model_validator(mode="after")
    def _patch_fits_model(self) -> ExperimentConfig:
        patch, dims = self.data.patch_size, self.model.spatial_dims
        if patch is not None and (len(patch) != dims or min(patch) < 1):
            raise ValueError(
                f"data.patch_size {list(patch)} needs {dims} positive sizes for a "
                f"{dims}D model; set one size per spatial axis"
            )
        target = self.data.target_spacing
        if target is not None and (len(target) != dims or not all(0 < v < inf for v in target)):
            raise ValueError(
                f"data.target_spacing {list(target)} needs {dims} positive finite voxel "
                f"sizes for a {dims}D model (in the images' units, e.g. mm), or null"
            )
        return self

    @model_validator(mode="after")
    def _loss_fits_model(self) -> ExperimentConfig:
        channels, mode = self.model.out_channels, self.loss.mode
        if mode == "binary" and channels != 1:
            raise ValueError(
                f"loss.mode 'binary' needs model.out_channels 1 (got {channels}); "
                "set out_channels: 1 or loss.mode: multiclass"
            )
        if mode == "multiclass" and channels < 2:
            raise ValueError(
                "loss.mode 'multiclass' needs model.out_channels >= 2 (background included)"
            )
        return self

    def fingerprint(self, *extra: str) -> str:
        """A short stable hash of the config (and extra inputs such as the data version)."""
        blob = json.dumps(self.model_dump(mode="json", exclude=_NOT_FINGERPRINTED), sort_keys=True)
        if self.data.target_spacing is not None:  # unset: the hash of configs before it
            blob += json.dumps(self.data.target_spacing)
        blob += "|".join(extra)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


# Where a node caches data changes nothing a run computes: a run moved to nodes with
# other disks still resumes. target_spacing joins the hash only when set.
_NOT_FINGERPRINTED = {"data": {"node_cache_dir", "node_cache_gb", "target_spacing"}}


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: `<source>: <field.path>: <message> (got <value>)`, problems joined by "; "."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {e.get('input')!r})"
        # pydantic prefixes a validator's own message with "Value error, ": not for users.
        message = e["msg"].removeprefix("Value error, ")
        problems.append(f"{source}: {where}: {message}{got}")
    return "; ".join(problems)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> ExperimentConfig:
    """Validate a plain dict into an ExperimentConfig, or raise ConfigError."""
    try:
        return ExperimentConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except ValueError as err:  # preset lookups and model-level checks raise ValueError
        raise ConfigError(f"{source}: {err}") from None


def load_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Read a YAML config (None: the embedded defaults) and apply dotted overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file; pass an existing YAML file") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: {yaml_problem(err)}; fix the syntax") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read ({type(err).__name__}: {err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_config(data, source)


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: what is wrong and where."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML: {problem}{where}"


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `section.key` in a nested dict, creating sections (refuses a value in the way)."""
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {dotted}: empty key part; use section.key, e.g. train.epochs")
    node = data
    for depth, key in enumerate(keys[:-1]):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            section = ".".join(keys[: depth + 1])
            raise ConfigError(f"--set {dotted}: {section} is a value, not a section")
    node[keys[-1]] = value


def flatten(config: BaseModel, prefix: str = "") -> dict[str, str]:
    """Flatten a config to `section.key: value` strings (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in config.model_dump(mode="json").items():
        _flatten_into(out, f"{prefix}{key}", value)
    return out


def tracked_params(cfg: ExperimentConfig) -> dict[str, str]:
    """`flatten(cfg)` as the run used it: no GPUs per worker when use_gpu is off."""
    params = flatten(cfg)
    if not cfg.scaling.use_gpu:
        params["scaling.gpus_per_worker"] = "0"
    return params


def _flatten_into(out: dict[str, str], key: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten_into(out, f"{key}.{k}", v)
    else:
        out[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
