"""How the planner picks the intensity normalisation from a fingerprint.

- ``ct`` for integer images whose range spans Hounsfield-like values (min <= `CT_MIN`,
  max >= `CT_MAX`): clip to the foreground's 0.5/99.5 percentiles, z-score with the
  foreground's mean/std (nnU-Net's CT scheme: one window fits every scan).
- the same window for other data whose cases share one intensity scale: the spread
  over train cases of each case's median foreground intensity is under
  `SHARED_SCALE_RATIO` x as large z-scored with the train split's stats as z-scored
  with each image's own (slabs or tiles of one scan: per-image stats move with the
  share of background in each case, so one tissue lands at different inputs).
- else ``per_image`` z-score (nnU-Net's default for MRI, microscopy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from unet_core.data.normalization import Normalization
from unet_core.data.prepared import Case, Manifest, case_stats

if TYPE_CHECKING:
    from unet_core.planning import Fingerprint

CT_MIN, CT_MAX = -500.0, 500.0  # an integer range spanning these looks like Hounsfield units
# Shared-scale data leaves per-image z-scoring (nnU-Net's default, kept on ties and
# noise) only when the train split's stats bring the cases' foreground medians at least
# this much closer together: a clear margin.
SHARED_SCALE_RATIO = 0.5


def case_spread(
    per_case: dict[str, list[np.ndarray]], cases: dict[str, Case], manifest: Manifest
) -> tuple[float, float] | None:
    """Std over train cases of each case's median foreground intensity, z-scored with
    the case's own mean/std and with the train split's, averaged over channels: the
    normalisation with the smaller spread puts one tissue at one input value."""
    if len(per_case) < 2:
        return None
    own, shared = [], []
    for stem, channels in per_case.items():
        medians = np.array([np.median(v) for v in channels])
        mean, std = case_stats(cases[stem])
        own.append((medians - mean) / np.maximum(std, 1e-6))
        shared.append((medians - np.asarray(manifest.mean)) / np.asarray(manifest.std))
    spread = [float(np.mean(np.std(np.array(z), axis=0))) for z in (own, shared)]
    return spread[0], spread[1]


def choose_normalization(fp: Fingerprint) -> tuple[Normalization, str]:
    """The normalisation for a fingerprint and the one-line reason."""
    lo, hi = fp.intensity_range[0]
    integer = np.dtype(fp.dtype).kind in "iu"
    if integer and lo <= CT_MIN and hi >= CT_MAX:
        norm = Normalization(mode="ct", clip=fp.fg_percentiles[0], mean=fp.fg_mean, std=fp.fg_std)
        why = (
            f"CT-like: integer {fp.dtype} spanning [{lo:g}, {hi:g}] (<= {CT_MIN:g} and >= "
            f"{CT_MAX:g}); clip to the foreground's 0.5/99.5 percentiles, z-score with "
            "its mean/std"
        )
        return norm, why
    return _non_ct(fp)


def _non_ct(fp: Fingerprint) -> tuple[Normalization, str]:
    """Per-image z-score (nnU-Net's default for non-CT data), unless the cases share one
    intensity scale (slabs or tiles of one scan, a calibrated instrument): their
    foreground medians agree clearly better under the train split's stats than under
    each image's own, which move with how much of a case is background and so shift one
    tissue to different inputs in different cases. Shared-scale data is then normalised
    as nnU-Net normalises CT, whose Hounsfield units are the standard shared scale."""
    lo, hi = fp.intensity_range[0]
    spread = fp.fg_case_spread
    if spread is None or spread[1] >= SHARED_SCALE_RATIO * spread[0]:
        return (
            Normalization(mode="per_image"),
            f"{fp.dtype} in [{lo:g}, {hi:g}] is not CT-like and its cases do not share one "
            "intensity scale: each image z-scored by its own stats",
        )
    shared = (
        f"cases share one intensity scale: their foreground medians vary by {spread[1]:.3g} "
        f"z under the train split's mean/std, {spread[0]:.3g} under each image's own "
        f"(< {SHARED_SCALE_RATIO:g}x)"
    )
    if fp.in_channels > 1:  # one clip window cannot fit every channel
        return Normalization(mode="dataset"), f"{shared}: train split's mean/std"
    norm = Normalization(mode="ct", clip=fp.fg_percentiles[0], mean=fp.fg_mean, std=fp.fg_std)
    why = f"{shared}: as CT, clip to the foreground's 0.5/99.5 percentiles, z-score with its"
    return norm, f"{why} mean/std"
