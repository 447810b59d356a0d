"""Search spaces: documented YAML files that map dotted `ExperimentConfig` keys to
distributions, validated against the typed configs before any trial starts.

A space file looks like::

    name: hpo
    description: optimiser, learning rate, batch size, loss weights, augmentation
    params:
      optim.lr:                 {loguniform: [1.0e-4, 1.0e-2]}
      optim.name:               {choice: [adamw, adam, sgd]}
      train.batch_size:         {choice: [4, 8]}
      loss.params.lambda_dice:  {uniform: [0.5, 2.0]}
      data.augment.strength:    {uniform: [0.0, 1.0]}    # AugmentConfig.from_strength
      loss.deep_supervision_decay:                       # only when deep supervision is on
        uniform: [0.3, 1.0]
        when: {model.deep_supervision: true}

Distributions: `loguniform`/`uniform` `[low, high]`, `randint` `[low, high)`,
`choice` and `grid` `[values...]`. Virtual keys (not fields of the config):
`model.preset` (start from a preset, then apply the other `model.*` keys),
`data.augment.strength` (`AugmentConfig.from_strength`) and
`loss.deep_supervision_decay` (weights `decay**i` over the `model.depth` outputs).
A parameter with `when` is sampled always (searchers need a flat space) but applied only
when every listed key has the given value in the resolved trial config.
"""

from __future__ import annotations

import itertools
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unet_core.augment import AugmentConfig
from unet_core.models import list_models
from unetflow.config import ConfigError, ExperimentConfig, parse_config, yaml_problem

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")
VIRTUAL_KEYS = ("model.preset", "data.augment.strength", "loss.deep_supervision_decay")
# Cartesian products of the choice parameters up to this size are validated in full.
MAX_COMBINATIONS = 2048

Dist = Literal["loguniform", "uniform", "randint", "choice", "grid"]


class ParamSpec(BaseModel):
    """One searched parameter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist: Dist
    low: float | None = None  # ranges: lower bound
    high: float | None = None  # ranges: upper bound (exclusive for randint)
    values: tuple[Any, ...] = ()  # choice / grid: the candidates
    when: dict[str, Any] = Field(default_factory=dict)  # applied only if these keys match

    @property
    def is_range(self) -> bool:
        return self.dist in ("loguniform", "uniform", "randint")

    def candidates(self) -> list[Any]:
        """Values that validation tries: every choice, or both ends of a range."""
        if not self.is_range:
            return list(self.values)
        high = self.high - 1 if self.dist == "randint" else self.high
        cast = int if self.dist == "randint" else float
        return [cast(self.low), cast(high)]


class SearchSpace(BaseModel):
    """A named, validated search space."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    params: dict[str, ParamSpec]
    source: str = "space"

    @property
    def uses_grid(self) -> bool:
        return any(p.dist == "grid" for p in self.params.values())

    def to_tune(self) -> dict[str, Any]:
        """The Ray Tune `param_space` (flat: dotted keys as names)."""
        from ray import tune

        out: dict[str, Any] = {}
        for key, p in self.params.items():
            if p.dist == "loguniform":
                out[key] = tune.loguniform(p.low, p.high)
            elif p.dist == "uniform":
                out[key] = tune.uniform(p.low, p.high)
            elif p.dist == "randint":
                out[key] = tune.randint(int(p.low), int(p.high))
            elif p.dist == "choice":
                out[key] = tune.choice(list(p.values))
            else:
                out[key] = tune.grid_search(list(p.values))
        return out


def load_space(path: str | Path, base: ExperimentConfig | None = None) -> SearchSpace:
    """Read and validate a space file against `base` (default: the embedded config).

    Raises:
        ConfigError: one line naming the file, the key and the valid values.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such search space file; see tune/spaces/") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {yaml_problem(err)}; fix the syntax") from None
    space = parse_space(raw, str(path))
    validate_space(space, base or ExperimentConfig())
    return space


def parse_space(raw: Any, source: str) -> SearchSpace:
    """Turn the YAML mapping into a `SearchSpace` (shape only, no config checks)."""
    unknown = sorted(set(raw) - {"name", "description", "params"}) if isinstance(raw, dict) else []
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level keys {unknown}; valid: name, description, params"
        )
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise ConfigError(f"{source}: needs a `params:` mapping of dotted keys to distributions")
    params = {str(k): _parse_param(str(k), v, source) for k, v in raw["params"].items()}
    name = str(raw.get("name") or Path(source).stem)
    return SearchSpace(
        name=name, description=str(raw.get("description", "")), params=params, source=source
    )


def _parse_param(key: str, spec: Any, source: str) -> ParamSpec:
    where = f"{source}: params.{key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping like {{choice: [a, b]}}, got {spec!r}")
    dists = [d for d in spec if d in DISTRIBUTIONS]
    extra = sorted(set(spec) - set(DISTRIBUTIONS) - {"when"})
    if len(dists) != 1 or extra:
        raise ConfigError(
            f"{where}: give exactly one distribution of {list(DISTRIBUTIONS)} "
            f"(and optionally `when`), got keys {sorted(spec)}"
        )
    dist, arg = dists[0], spec[dists[0]]
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}.when: expected a mapping of key: value, got {when!r}")
    if not isinstance(arg, list) or not arg:
        raise ConfigError(f"{where}.{dist}: expected a non-empty list, got {arg!r}")
    if dist in ("choice", "grid"):
        return ParamSpec(dist=dist, values=tuple(arg), when=when)
    return _parse_range(where, dist, arg, when)


def _parse_range(where: str, dist: str, arg: list, when: dict) -> ParamSpec:
    try:
        # YAML reads `1e-4` (no dot) as a string: accept it as a number here.
        low, high = (float(v) for v in arg)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{dist}: expected [low, high] numbers, got {arg!r}") from None
    if not low < high:
        raise ConfigError(f"{where}.{dist}: needs low < high, got [{low}, {high}]")
    if dist == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform: needs low > 0, got {low}; use uniform for 0")
    if dist == "randint" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}.randint: needs integers [low, high), got {arg!r}")
    return ParamSpec(dist=dist, low=low, high=high, when=when)


# --- resolving one trial's config ---------------------------------------------------------


def resolve_config(
    base: ExperimentConfig, sampled: dict[str, Any], specs: dict[str, ParamSpec] | None = None
) -> ExperimentConfig:
    """Apply sampled values (dotted keys) to `base`, honouring `when` conditions.

    Raises:
        ConfigError: when the combination is invalid.
    """
    data = base.model_dump(mode="json")
    active = _active(sampled, specs or {}, base)
    preset = active.pop("model.preset", None)
    strength = active.pop("data.augment.strength", None)
    decay = active.pop("loss.deep_supervision_decay", None)
    if preset is not None:
        keep = {k: data["model"][k] for k in ("spatial_dims", "in_channels", "out_channels")}
        data["model"] = {"preset": preset, **keep}
    if strength is not None:
        data["data"]["augment"] = AugmentConfig.from_strength(float(strength)).model_dump()
    for key, value in active.items():
        _set(data, key, value)
    if decay is not None and _get(data, "model.deep_supervision"):
        depth = int(_get(data, "model.depth") or base.model.depth)
        data["loss"]["deep_supervision"] = True  # LossConfig wants both set together
        data["loss"]["deep_supervision_weights"] = [float(decay) ** i for i in range(depth)]
    return parse_config(data, "trial config")


def _active(sampled: dict[str, Any], specs: dict[str, ParamSpec], base: ExperimentConfig) -> dict:
    """The sampled values whose `when` conditions hold (conditions see other samples)."""
    flat_base = base.model_dump(mode="json")
    out = {}
    for key, value in sampled.items():
        spec = specs.get(key)
        conditions = spec.when if spec else {}
        if all(_lookup(sampled, flat_base, k) == v for k, v in conditions.items()):
            out[key] = value
    return out


def _lookup(sampled: dict[str, Any], base: dict, key: str) -> Any:
    return sampled[key] if key in sampled else _get(base, key)


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# --- validation ---------------------------------------------------------------------------


def validate_space(space: SearchSpace, base: ExperimentConfig) -> None:
    """Check keys, every choice (and range end) and small choice combinations.

    Raises:
        ConfigError: `<file>: params.<key>: <problem>; valid values: [...]`.
    """
    for key, spec in space.params.items():
        _check_key(space.source, key, base)
        for cond in spec.when:
            if cond not in space.params:
                _check_key(space.source, cond, base, f"params.{key}.when")
        for value in spec.candidates():
            _check_value(space, key, value, base)
    _check_combinations(space, base)


def _check_key(source: str, key: str, base: ExperimentConfig, where: str = "params") -> None:
    if key in VIRTUAL_KEYS or key.startswith("loss.params."):
        return
    node: Any = ExperimentConfig
    for i, part in enumerate(key.split(".")):
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            valid = sorted(fields) if fields else []
            prefix = ".".join(key.split(".")[:i]) or "(top level)"
            raise ConfigError(
                f"{source}: {where}: unknown key {key!r}; valid keys under {prefix}: {valid}"
            )
        node = _model_type(fields[part].annotation)
    return


def _model_type(annotation: Any) -> Any:
    """The pydantic model class inside an annotation (`X`, `X | None`), else the annotation."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _check_value(space: SearchSpace, key: str, value: Any, base: ExperimentConfig) -> None:
    try:
        # Conditional parameters are checked in the situation where they apply.
        resolve_config(base, {**space.params[key].when, key: value}, space.params)
    except (ConfigError, ValueError) as err:
        valid = valid_values(key)
        hint = f"; valid values: {valid}" if valid else ""
        reason = str(err).split("\n")[0].replace("trial config: ", "")
        raise ConfigError(
            f"{space.source}: params.{key}: {value!r} is not valid ({reason}){hint}"
        ) from None


def valid_values(key: str) -> list[Any] | None:
    """The allowed values of a `Literal`-typed key, the presets, or None."""
    if key == "model.preset":
        return list_models()
    if key == "loss.name":
        from unet_core.losses import list_losses

        return list_losses()
    node: Any = ExperimentConfig
    annotation = None
    for part in key.split("."):
        fields = getattr(node, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        node = _model_type(annotation)
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if annotation is bool:
        return [True, False]
    return None


def _check_combinations(space: SearchSpace, base: ExperimentConfig) -> None:
    discrete = {k: p.candidates() for k, p in space.params.items()}
    total = 1
    for values in discrete.values():
        total *= len(values)
    if total > MAX_COMBINATIONS:
        return  # too many to try; each value was checked on its own above
    keys = list(discrete)
    for combo in itertools.product(*(discrete[k] for k in keys)):
        sampled = dict(zip(keys, combo, strict=True))
        try:
            resolve_config(base, sampled, space.params)
        except (ConfigError, ValidationError, ValueError) as err:
            reason = str(err).split("\n")[0].replace("trial config: ", "")
            raise ConfigError(
                f"{space.source}: the combination {sampled} is invalid ({reason}); "
                "add a `when:` condition to the parameter that must not apply"
            ) from None
