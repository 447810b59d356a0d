"""The plan applied: fingerprint the resolved data, plan what the config leaves unset.

Precedence, lowest first: embedded defaults < plan < config file < ``--set``. A setting
is the user's when their YAML or ``--set`` named it (pydantic's ``model_fields_set``,
kept through Prefect's in-process parameters), never by comparing against defaults;
only the others are planned. ``plan: false`` (``--no-plan``) turns planning off.

`plan_yaml` writes the plan as a config file (``data:``, ``model:``, ``train:``) with a
``# why`` comment on each planned field and the fingerprint as a header; passing it back
with ``--config`` reproduces the planned config exactly (every value in it is set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from unet_core.data import PreparedStore
from unet_core.data.manifest import MANIFEST
from unet_core.data.store import is_remote
from unet_core.planning import Plan, fingerprint, plan
from unetflow.config import DEFAULT_MODEL, ExperimentConfig, parse_config, set_dotted
from unetflow.datasets import is_raw_folder, resolve_for

PLAN_ARTIFACT = "plan.yaml"
GPU_SHARE = 0.5  # of the GPU's memory: weights, optimizer state, cuDNN workspace take the rest
CPU_SHARE = 0.25  # of the available RAM, split among workers: a CPU box runs other work
CPU_CAP = 2 * 2**30  # per worker on CPU: beyond this, patches are too slow to train on CPU
MODEL_KEYS = ("model.depth", "model.pool_kernels")  # planned together or not at all


def user_settings(cfg: BaseModel, prefix: str = "") -> set[str]:
    """Dotted keys the user gave (config file or --set), nested sections included."""
    out: set[str] = set()
    for name in cfg.model_fields_set:
        out.add(prefix + name)
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            out |= user_settings(value, f"{prefix}{name}.")
    return out


def memory_budget(cfg: ExperimentConfig) -> tuple[int, str]:
    """Activation memory per worker, and where the number comes from.

    A GPU the driver sees (with ``scaling.use_gpu``): `GPU_SHARE` of its memory (times
    ``gpus_per_worker`` when workers share a GPU). Else
    `CPU_SHARE` of the available RAM split among the workers, at most `CPU_CAP` each.
    """
    import torch

    if cfg.scaling.use_gpu and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        share = GPU_SHARE * min(cfg.scaling.gpus_per_worker or 1.0, 1.0)
        budget = int(props.total_memory * share)
        return budget, f"{share:.0%} of {props.name}'s {props.total_memory / 2**30:.0f} GiB"
    available = _available_ram()
    workers = cfg.scaling.num_workers
    budget = int(min(available * CPU_SHARE / workers, CPU_CAP))
    return budget, (
        f"CPU: {CPU_SHARE:.0%} of {available / 2**30:.1f} GiB available RAM over {workers} "
        f"worker(s), at most {CPU_CAP / 2**30:.0f} GiB each"
    )


def _available_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil comes with Ray; a bare install reads the free pages
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def plan_for(
    location: str | Path, cfg: ExperimentConfig, options: dict | None = None
) -> tuple[Plan, str]:
    """Plan `cfg`'s unset settings for the prepared data at `location`; returns the plan
    and where its memory budget comes from. What the user fixed (patch, depth, pooling,
    width) is planned around, not over."""
    fixed = user_settings(cfg)
    memory, memory_why = memory_budget(cfg)
    kernels = cfg.model.kernels if fixed & set(MODEL_KEYS) else None
    patch = cfg.data.patch_size if "data.patch_size" in fixed else None
    result = plan(
        fingerprint(PreparedStore(location, options)),
        memory,
        cfg.scaling.num_workers,
        base_channels=cfg.model.level_channels[0],
        kernels=kernels,
        patch_size=patch,
    )
    return result, memory_why


def planned_values(cfg: ExperimentConfig, result: Plan) -> dict[str, Any]:
    """Dotted key -> JSON value of each planned setting the user left unset."""
    fixed = user_settings(cfg)
    out = {k: _json(v.value) for k, v in result.settings().items() if k not in fixed}
    if fixed & set(MODEL_KEYS):
        for key in MODEL_KEYS:
            out.pop(key, None)
    return out


def planned_dict(cfg: ExperimentConfig, result: Plan) -> dict[str, Any]:
    """What the user set plus the planned values, as a config dict (sections data,
    model, train first): parsing it gives `apply_plan`'s config."""
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    if "model" not in raw:  # the embedded default architecture, not the bare class's
        raw["model"] = DEFAULT_MODEL.model_dump(mode="json", exclude_unset=True)
    for key, value in planned_values(cfg, result).items():
        set_dotted(raw, key, value)
    first = {s: raw.pop(s) for s in ("data", "model", "train") if s in raw}
    return first | raw


def apply_plan(cfg: ExperimentConfig, result: Plan, source: str = "plan") -> ExperimentConfig:
    """`cfg` with the planned values under the user's (defaults < plan < user)."""
    return parse_config(planned_dict(cfg, result), source)


def prepared_location(project_dir: Path, cfg: ExperimentConfig) -> str | Path | None:
    """Where `data.path` already holds a prepared set (a URI or a folder with a
    manifest); None for a raw folder or a path that does not exist (yet)."""
    if is_remote(cfg.data.path):
        return cfg.data.path
    path = (project_dir / cfg.data.path).resolve()
    return path if (path / MANIFEST).is_file() else None


def planned(
    project_dir: Path, cfg: ExperimentConfig, force: bool = False
) -> tuple[ExperimentConfig, Plan | None, str]:
    """`cfg` with its unset settings planned from the data at `data.path`, the plan and
    its memory note; `cfg` unchanged with no plan when `plan: false` (unless `force`) or
    when the data is not there yet (the DVC stages make it later; a missing path is
    reported by the data check that follows). A raw folder is prepared first."""
    if not (cfg.plan or force):
        return cfg, None, ""
    location = prepared_location(project_dir, cfg)
    if location is None:
        if not is_raw_folder((project_dir / cfg.data.path).resolve()):
            return cfg, None, ""
        location, _ = resolve_for(project_dir, cfg, planning=True)
    result, memory_why = plan_for(location, cfg)
    return apply_plan(cfg, result), result, memory_why


def plan_yaml(cfg: ExperimentConfig, result: Plan, memory_why: str = "") -> str:
    """The planned config as YAML: planned fields commented with their reason, the
    fingerprint and the target spacing in the header."""
    values = planned_values(cfg, result)
    reasons = {k: v.why for k, v in result.settings().items() if k in values}
    body = planned_dict(cfg, result)
    header = [
        "# unetflow plan: settings derived from the data's fingerprint.",
        "# Edit and pass back with --config; values set here are never re-planned.",
        *(f"#   {line}" for line in result.fingerprint.summary()),
        f"#   memory per worker: {result.memory_bytes / 2**20:.0f} MiB ({memory_why})",
        *_spacing_lines(result),
    ]
    return "\n".join(header) + "\n" + _commented(body, reasons)


def _spacing_lines(result: Plan) -> list[str]:
    """The recommended target spacing, as the params.yaml line that would apply it."""
    spacing = [round(s, 4) for s in result.target_spacing.value]
    return [
        f"# recommended data.target_spacing: {spacing}  ({result.target_spacing.why})",
        "#   not applied: to resample, put it in the data section of params.yaml and",
        "#   re-run `unetflow data prepare` (the prepared data, and its version, change)",
    ]


def _commented(body: dict[str, Any], reasons: dict[str, str]) -> str:
    """YAML of `body`: a planned key on one line (flow style) with `# why` after it."""
    return "\n".join(_lines(body, "", 0, reasons)) + "\n"


def _lines(node: dict[str, Any], prefix: str, indent: int, reasons: dict[str, str]) -> list[str]:
    pad, lines = "  " * indent, []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        why = reasons.get(dotted)
        if why is not None:
            flow = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
            lines.append(
                f"{pad}{key}: {flow.removesuffix(chr(10)).removesuffix('...').strip()}  # {why}"
            )
        elif isinstance(value, dict) and any(r.startswith(f"{dotted}.") for r in reasons):
            lines.append(f"{pad}{key}:")
            lines.extend(_lines(value, f"{dotted}.", indent + 1, reasons))
        else:
            text = yaml.safe_dump({key: value}, sort_keys=False).rstrip()
            lines.extend(pad + line for line in text.splitlines())
    return lines


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):  # unset parameters (None) would only add noise
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value
