"""The DVC `prepare` stage: data/raw -> data/prepared (one zarr array per case + manifest).

Splits train/val/test deterministically by seed (whole groups per split when
`data.split.group` is set, so one patient or scene never straddles two splits), then
validates and writes the cases in parallel processes (`data.workers`), each holding one
case at a time (no stage holds the data set, and cases may differ in shape);
normalisation statistics on the train split are pooled into the manifest, written last.
`--out` is a folder or an `s3://bucket/prefix` (written there directly). Run by `dvc repro`
as `python -m unetflow.prepare --params params.yaml --raw data/raw --out data/prepared`;
without `--raw` it reads the source itself (the one-stage form of earlier versions).
The `data` section of params.yaml is parsed in `unetflow.data_params`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.data import (
    DataError,
    Sample,
    generate_synthetic,
    scan_folder,
    split_indices,
    store,
    write_manifest,
)
from unet_core.data.manifest import MANIFEST
from unetflow.data_params import DataParams, GroupParams, read_params
from unetflow.errors import UsageError
from unetflow.ingest import check_raw, ingest_into, write_meta
from unetflow.prepare_cases import ArrayJob, FileJob, Job, RawJob, run_jobs


def group_labels(group: GroupParams, stems: list[str], params_file: Path | None) -> list[str]:
    """One group label per stem, from a regex on the stem or a CSV column."""
    if group.regex is not None:
        pattern = re.compile(group.regex)
        labels = []
        for stem in stems:
            match = pattern.search(stem)
            if match is None:
                raise DataError(
                    params_file,
                    f"data.split.group.regex {group.regex!r} does not match "
                    f"image stem {stem!r}; fix the regex so every stem matches",
                )
            named = match.groupdict().get("group")
            labels.append(named or (match.group(1) if pattern.groups else match.group(0)))
        return labels
    path = Path(group.csv)
    if not path.is_absolute() and params_file is not None:
        path = params_file.parent / path
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(path, "group CSV not found; fix data.split.group.csv") from None
    if not rows or "stem" not in rows[0] or group.column not in rows[0]:
        raise DataError(path, f"needs the columns 'stem' and {group.column!r}")
    table = {row["stem"]: row[group.column] for row in rows}
    missing = [s for s in stems if s not in table]
    if missing:
        raise DataError(path, f"{len(missing)} stems have no row, e.g. {missing[0]!r}; add them")
    return [table[s] for s in stems]


def split_stats(idx: dict[str, np.ndarray], groups: list[str] | None) -> str:
    """`train=28 val=6 test=6` plus the group count per split when grouping."""
    parts = []
    for name, rows in idx.items():
        extra = f" ({len({groups[i] for i in rows})} groups)" if groups is not None else ""
        parts.append(f"{name}={len(rows)}{extra}")
    return " ".join(parts)


def _provenance(params: DataParams) -> dict:
    """Params for the manifest; an unset group or target spacing is left out so that data
    prepared before they existed keeps its bytes, and so its DVC version."""
    exclude: dict[str, Any] = {}
    if params.split.group is None:
        exclude["split"] = {"group"}
    if params.target_spacing is None:
        exclude["target_spacing"] = True
    return params.model_dump(mode="json", exclude=exclude or None)


def _unsplit_jobs(params: DataParams, raw: Path | None, scratch: Path) -> list[Job]:
    """One job per case (split not yet set), in stem order. An `s3://` source without
    `raw` is ingested into `scratch` first; a local folder is read where it is."""
    if raw is None and params.source == "folder" and params.folder.startswith("s3://"):
        raw = scratch / "raw"
        raw.mkdir()
        write_meta(raw, ingest_into(params, raw), params)
    if raw is not None:
        return [
            RawJob(
                c.stem,
                "",
                Sample(c.stem, raw / c.image, raw / c.mask),
                params.spatial_dims,
                c.sha256,
            )
            for c in check_raw(raw)
        ]
    if params.source == "synthetic":
        syn = params.synthetic
        images, masks = generate_synthetic(syn.num_images, tuple(syn.shape), seed=syn.seed)
        return [ArrayJob(f"synthetic-{i:05d}", "", images[i], masks[i]) for i in range(len(images))]
    samples = scan_folder(params.folder, params.spatial_dims)
    return [FileJob(s.stem, "", s, params.spatial_dims) for s in samples]


def _jobs(
    params: DataParams, raw: Path | None, params_file: Path | None, scratch: Path
) -> tuple[list[Job], str]:
    """One job per case, in split order, and the split summary line."""
    unsplit = _unsplit_jobs(params, raw, scratch)
    stems = [job.stem for job in unsplit]
    group = params.split.group
    groups = group_labels(group, stems, params_file) if group is not None else None
    idx = split_indices(len(stems), params.split.fractions, seed=params.split.seed, groups=groups)
    jobs = [replace(unsplit[i], split=name) for name, rows in idx.items() for i in rows.tolist()]
    return jobs, split_stats(idx, groups)


def _write(jobs: list[Job], where: str, params: DataParams, workers: int | None) -> None:
    """Every case, then the manifest, which also drops cases an earlier write left."""
    target = params.target_spacing
    cases = run_jobs(jobs, where, workers or params.workers, params.chunks, target=target)
    meta = {"source": params.source, "params": _provenance(params)}
    write_manifest(where, cases, params.chunks, meta, target_spacing=target)


def _write_remote(jobs: list[Job], uri: str, params: DataParams, workers: int | None) -> None:
    """Straight into object storage, which has no rename: the old manifest goes first
    and the new one last, so a prefix with a manifest always holds every case it lists
    (a crash leaves no manifest, which readers refuse, and a rerun completes it)."""
    with contextlib.suppress(FileNotFoundError):
        store.remove_tree(store.join(uri, MANIFEST))
    _write(jobs, store.normalise(uri), params, workers)


def prepare(
    params: DataParams,
    out: Path | str,
    raw: Path | None = None,
    params_file: Path | None = None,
    workers: int | None = None,
) -> None:
    """Split the data set and write its cases + manifest to a folder or an `s3://` prefix.

    Args:
        params: the `data` section of params.yaml.
        out: the prepared folder (built in a temp sibling and renamed into place, so never
            half-written) or `s3://bucket/prefix` (endpoint from `AWS_ENDPOINT_URL`).
        raw: a folder written by the `ingest` stage; None reads the source directly.
        params_file: where `params` came from (error messages, relative CSV paths).
        workers: processes writing cases; None: `data.workers`.
    """
    local = None if store.is_remote(out) else Path(out)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix=".prepare-", dir=local.parent if local is not None else None
    ) as tmp:
        jobs, summary = _jobs(params, raw, params_file, Path(tmp))
        if local is None:
            _write_remote(jobs, str(out), params, workers)
        else:
            staging = Path(tmp) / "prepared"
            staging.mkdir()
            _write(jobs, str(staging), params, workers)
            if local.exists():
                shutil.rmtree(local)
            staging.rename(local)  # nothing half-written is ever left at `out`
    print(f"prepared {len(jobs)} cases into {out}: {summary}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, help="ingested raw data (default: read the source)")
    parser.add_argument(
        "--out",
        default="data/prepared",
        help="a folder or s3://bucket/prefix (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, help="processes writing cases (default: data.workers)"
    )
    args = parser.parse_args(argv)
    try:
        out = args.out if store.is_remote(args.out) else Path(args.out)
        prepare(read_params(args.params), out, args.raw, args.params, args.workers)
    except (DataError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
