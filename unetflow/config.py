"""The experiment configuration: one typed object, validated once at the edge.

Every entry point (CLI, Prefect parameters, Tune trials) parses into `ExperimentConfig`;
the library below receives typed objects, never dicts.
"""

from __future__ import annotations

import hashlib
import json
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
from unet_core.engine import OptimConfig, SchedulerConfig, TrainConfig
from unet_core.losses import LossConfig
from unet_core.models import ModelConfig, get_model_config


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that says what to change."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    path: str = Field(
        "data/prepared",
        description="prepared data set (manifest.json + shards), relative to the project folder",
    )
    version: str | None = Field(
        None, description="expected data version (DVC md5 of the prepared data); None: any"
    )
    augment: AugmentConfig = AugmentConfig()


class ScalingSettings(_Frozen):
    num_workers: int = Field(2, ge=1, description="Ray Train workers (data-parallel ranks)")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(1, ge=0, description="used when use_gpu is true")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="extra custom resources, e.g. {'trainer_node': 1}"
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class CheckpointSettings(_Frozen):
    storage_path: str | None = Field(
        None,
        description="Ray Train storage: a folder or s3://bucket/prefix; "
        "None: <project>/.unetflow/ray_results",
    )
    storage_shared: bool = Field(
        False,
        description="storage_path is a folder every node mounts (NFS): allow it on a "
        "multi-node cluster, where a local folder is refused",
    )
    num_to_keep: int = Field(2, ge=1, description="best checkpoints kept (the latest is kept too)")
    max_failures: int = Field(
        2, ge=-1, description="worker-group restarts from the last checkpoint"
    )


class TrackingSettings(_Frozen):
    experiment: str = "unetflow"
    registered_model: str = "unet-seg"
    champion_alias: str = "champion"
    min_dice: float = Field(
        0.5, ge=0, le=1, description="test Dice a first version needs to become champion"
    )


class ExperimentConfig(_Frozen):
    """One training run: data, model, loss, optimisation, scaling, checkpoints, tracking."""

    name: str = Field("unet-seg", pattern=r"^[A-Za-z0-9_.-]+$", description="run name prefix")
    data: DataConfig = DataConfig()
    model: ModelConfig = Field(
        default_factory=lambda: get_model_config("unet", base_channels=16, depth=3)
    )
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    train: TrainConfig = TrainConfig()
    scaling: ScalingSettings = ScalingSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    tracking: TrackingSettings = TrackingSettings()

    @field_validator("model", mode="before")
    @classmethod
    def _model_from_preset(cls, value: Any) -> Any:
        # YAML says `model: {preset: unet, depth: 3}`: start from the preset, then override.
        if isinstance(value, dict) and "preset" in value:
            overrides = {k: v for k, v in value.items() if k != "preset"}
            return get_model_config(value["preset"], **overrides)
        return value

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
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True) + "|".join(extra)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `<source>: <field.path>: <message> (got <value>)`."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        lines.append(f"{source}: {where}: {e['msg']}{got}")
    return "\n".join(lines)


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
            raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return parse_config(data, source)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def flatten(config: BaseModel, prefix: str = "") -> dict[str, str]:
    """Flatten a config to `section.key: value` strings (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in config.model_dump(mode="json").items():
        _flatten_into(out, f"{prefix}{key}", value)
    return out


def _flatten_into(out: dict[str, str], key: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten_into(out, f"{key}.{k}", v)
    else:
        out[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
