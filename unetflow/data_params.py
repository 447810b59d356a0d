"""The `data` section of params.yaml (`DataParams`): what the DVC stages ingest, how they
split it, how the prepared arrays are chunked and how many processes write them.
Parsed once here, used by `ingest` and `prepare`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from unet_core.data import DataError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticParams(_Frozen):
    num_images: int = Field(240, ge=3)
    shape: tuple[int, ...] = (64, 64)
    seed: int = 42


class GroupParams(_Frozen):
    """Keep samples of one group (patient, slide, scene) in one split.

    Give `regex` (applied to each image stem: the named group `group`, else the first
    group, else the whole match) or `csv` + `column` (a CSV with a `stem` column).
    """

    regex: str | None = None
    csv: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GroupParams:
        if (self.regex is None) == (self.csv is None):
            raise ValueError("set exactly one of group.regex and group.csv")
        if self.csv is not None and not self.column:
            raise ValueError("group.csv needs group.column: the CSV column holding the group")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"group.regex {self.regex!r} is not a regex: {err}") from None
        return self


class SplitParams(_Frozen):
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42
    group: GroupParams | None = None  # None: split images independently

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitParams:
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) <= 0:
            raise ValueError(f"fractions {self.fractions} must be positive and sum to 1")
        return self


class DataParams(_Frozen):
    @model_validator(mode="before")
    @classmethod
    def _no_shards(cls, raw: object) -> object:
        if isinstance(raw, dict) and "shard_size" in raw:
            raise ValueError(
                "shard_size belongs to the old shard format; delete it (cases are now "
                "chunked arrays: see data.chunks) and re-run `unetflow data prepare`"
            )
        return raw

    source: Literal["synthetic", "folder"] = "synthetic"
    folder: str | None = None  # a local folder or an s3://bucket/prefix

    spatial_dims: Literal[2, 3] = 2
    synthetic: SyntheticParams = SyntheticParams()
    split: SplitParams = SplitParams()
    # Spatial chunk shape of the prepared arrays; None: 256^2 in 2D, 64^3 in 3D.
    chunks: tuple[int, ...] | None = None
    workers: int = Field(2, ge=1)  # processes writing cases (does not change the output)
    # Voxel size per spatial axis every case is resampled to (images linear, masks
    # nearest); None: keep each case's native spacing. `unetflow plan` recommends one.
    target_spacing: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DataParams:
        if self.source == "folder" and not self.folder:
            raise ValueError("source is 'folder' but data.folder is empty; set data.folder")
        if self.source == "synthetic" and len(self.synthetic.shape) != self.spatial_dims:
            raise ValueError(
                f"synthetic.shape {list(self.synthetic.shape)} has {len(self.synthetic.shape)} "
                f"axes but spatial_dims is {self.spatial_dims}; make them agree"
            )
        if self.chunks is not None and (
            len(self.chunks) != self.spatial_dims or min(self.chunks) < 1
        ):
            raise ValueError(
                f"chunks {list(self.chunks)} needs {self.spatial_dims} positive sizes "
                "(one per spatial axis), or null for the default"
            )
        return self

    @field_validator("target_spacing")
    @classmethod
    def _spacing(cls, value: tuple[float, ...] | None, info: ValidationInfo) -> object:
        dims = info.data.get("spatial_dims", 2)  # validated first: declared before
        if value is not None and (len(value) != dims or min(value, default=0) <= 0):
            raise ValueError(
                f"{list(value)} needs {dims} positive voxel sizes (one per spatial axis, in "
                "the images' units, e.g. mm), or null to keep each case's own spacing"
            )
        return value


def read_params(path: Path) -> DataParams:
    """Parse the `data` section of params.yaml; errors name the file and field."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return DataParams.model_validate(raw.get("data", {}))
    except FileNotFoundError:
        raise DataError(path, "no such params file; pass --params PATH") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(path, f"data.{where}: {first['msg']}") from None
