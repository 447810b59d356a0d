"""The DVC `stats` stage: data/prepared -> DVC metrics and plots in reports/data/.

- `metrics.json` (`dvc metrics show`): samples per split, class balance (fraction of
  pixels per label), foreground fraction, image size, normalisation statistics.
- `class_balance.csv`, `image_sizes.csv`, `intensity_hist.csv` (`dvc plots show`).

Only the `stats` section of params.yaml drives it, so changing a `stats` value reruns
this stage alone. Run by `dvc repro` as
`python -m unetflow.stats --params params.yaml --prepared data/prepared --out reports/data`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unet_core.data import DataError, PreparedStore

# Appended to a params.yaml that has no `stats` section (DVC refuses missing params).
DEFAULT_SECTION = """
stats:                       # DVC `stats` stage only: changing these reruns nothing else
  intensity_bins: 32         # bins of the image intensity histogram (intensity_hist.csv)
  intensity_range: null      # [low, high] of that histogram; null: min and max of the data
"""


class StatsParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    intensity_bins: int = Field(32, ge=1, le=4096)
    intensity_range: tuple[float, float] | None = None


def read_stats_params(path: Path) -> StatsParams:
    """Parse the `stats` section of params.yaml (defaults when absent)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return StatsParams.model_validate(raw.get("stats") or {})
    except FileNotFoundError:
        raise DataError(path, "no such params file; pass --params PATH") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(path, f"stats.{where}: {first['msg']}") from None


def _histogram_range(manifest, params: StatsParams) -> tuple[float, float]:
    """The histogram's range: as configured, else the data's (from the manifest's sums)."""
    if params.intensity_range is not None:
        return params.intensity_range
    if not manifest.cases:
        return 0.0, 1.0
    return (
        min(min(c.stats.min) for c in manifest.cases),
        max(max(c.stats.max) for c in manifest.cases),
    )


def compute(prepared: Path, params: StatsParams) -> tuple[dict, dict[str, tuple[list, list]]]:
    """Metrics and plot tables (name -> (header, rows)) of a prepared data set.

    Reads one case at a time, so it runs in bounded memory on any data set size.
    """
    data = PreparedStore(prepared)
    manifest = data.manifest
    counts, balance_rows, label_pixels = {}, [], Counter()
    sizes: Counter = Counter()
    low, high = _histogram_range(manifest, params)
    hist = np.zeros(params.intensity_bins, dtype=np.int64)
    edges = np.linspace(low, high + 1e-12, params.intensity_bins + 1)
    for split in sorted(manifest.splits):
        split_pixels: Counter = Counter()
        for stem in manifest.stems(split):
            image, mask = data.load_case(stem)
            labels, pixels = np.unique(mask, return_counts=True)
            split_pixels.update(dict(zip(labels.tolist(), pixels.tolist(), strict=True)))
            sizes["x".join(map(str, mask.shape))] += 1
            hist += np.histogram(image.ravel(), bins=edges)[0]
        counts[split] = manifest.count(split)
        total = max(sum(split_pixels.values()), 1)
        for label, n in sorted(split_pixels.items()):
            balance_rows.append([split, label, round(n / total, 6)])
        label_pixels.update(split_pixels)
    all_pixels = max(sum(label_pixels.values()), 1)
    metrics = {
        "counts": {**counts, "total": sum(counts.values())},
        "class_balance": {
            f"label_{k}": round(v / all_pixels, 6) for k, v in sorted(label_pixels.items())
        },
        "foreground_fraction": round(1 - label_pixels.get(0, 0) / all_pixels, 6),
        "spatial_shape": list(manifest.spatial_shape),
        "in_channels": manifest.in_channels,
        "train_mean": list(manifest.mean),
        "train_std": list(manifest.std),
    }
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    plots = {
        "class_balance.csv": (["split", "label", "fraction"], balance_rows),
        "image_sizes.csv": (["size", "count"], [[s, n] for s, n in sorted(sizes.items())]),
        "intensity_hist.csv": (
            ["intensity", "count"],
            [[round(c, 6), int(n)] for c, n in zip(centers, hist, strict=True)],
        ),
    }
    return metrics, plots


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_stats(prepared: Path, out: Path, params: StatsParams) -> dict:
    """Compute and write metrics + plot files into `out`, each file written atomically."""
    metrics, plots = compute(prepared, params)
    out.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in plots.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        _atomic_text(out / name, buf.getvalue())
    # Metrics last: a present metrics.json means the plots beside it are complete.
    _atomic_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"data stats in {out}: counts {metrics['counts']}, classes {metrics['class_balance']}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("reports/data"))
    args = parser.parse_args(argv)
    try:
        write_stats(args.prepared, args.out, read_stats_params(args.params))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
