"""The paper-claim check, twice per stream (``claim.csv``): PNC against

- ``parameter-tuning``: the best parameter-tuning method (family ``parameter-tuning``:
  finetune, EWC, LwF), the paper's comparison;
- ``memory``: the best rival of any family whose total memory after the last step
  (``total_bytes`` = model + state bytes, mean over seeds) is no more than PNC's.

"Best" is the highest mean final accuracy over successful runs; references and ablations are
never candidates. Both comparisons pair runs by seed and report the accuracy difference in
points and the locality difference in points with their intervals (``stats.mean_interval``),
and the relative locality gain (Fieller's interval) only when the rival's own locality interval
excludes 0.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.report import stats
from benchmark.report.comparisons import SeedValues, baseline_label
from benchmark.report.tables import BASELINE

PARAMETER_TUNING = "parameter-tuning"
CLAIMED_POINTS = 5.0  # the paper: about +5 points of final accuracy over parameter tuning
CLAIMED_GAIN = 0.5  # the paper: about +50% locality over parameter tuning
COMPARISONS = {
    "parameter-tuning": "the best parameter-tuning method (the paper's comparison)",
    "memory": "the best rival at no more memory than PNC",
}


def claim_verdict(low: float, high: float, claimed: float, unit: str) -> str:
    """Plain-language reading of an interval [low, high] of PNC's gain against the claim."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if high < 0:
        return "contradicted: PNC is significantly worse"
    if low <= 0:
        return "not supported: no significant gain (the interval includes 0)"
    if high < claimed:
        return f"partly supported: a significant gain, but below the claimed {claimed:+g}{unit}"
    if low > claimed:
        return f"supported: the gain exceeds the claimed {claimed:+g}{unit}"
    return f"supported: the interval contains the claimed {claimed:+g}{unit}"


def locality_verdict_without_ratio(difference: stats.Interval, pnc: stats.Interval,
                                   rival: stats.Interval, claimed_gain: float) -> str:
    """The locality verdict when no relative gain is printed (the rival's locality interval
    includes 0, or Fieller's interval is unbounded): from the paired difference, and whether
    PNC's lower bound exceeds the rival's upper bound by more than the claimed relative gain."""
    if not (math.isfinite(difference.low) and math.isfinite(difference.high)):
        return "undefined"
    if difference.high < 0:
        return "contradicted: PNC keeps significantly fewer predictions"
    if difference.low <= 0:
        return "not supported: no significant difference (the interval includes 0)"
    if rival.high <= 0 or pnc.low >= (1 + claimed_gain) * rival.high:
        return ("supported: PNC keeps significantly more predictions, and its lower bound is "
                f"more than {100 * claimed_gain:+g}% above the rival's upper bound")
    return ("partly supported: PNC keeps significantly more predictions; the relative gain is "
            "undetermined")


CLAIM_COLUMNS = ["stream", "comparison", "pnc", "rival", "candidates", "n_pairs",
                 "pnc_total_bytes", "rival_total_bytes", "accuracy_pnc", "accuracy_rival",
                 "accuracy_difference_points", "accuracy_difference_low",
                 "accuracy_difference_high", "accuracy_verdict", "locality_pnc",
                 "locality_rival", "locality_rival_low", "locality_rival_high",
                 "locality_difference_points", "locality_difference_low",
                 "locality_difference_high", "locality_gain", "locality_gain_low",
                 "locality_gain_high", "locality_verdict", "supports_claim", "reason"]


def _candidates(ok: pd.DataFrame, comparison: str, pnc_bytes: float) -> tuple[pd.Series, str]:
    """Mean final accuracy of each candidate label, and why there is none."""
    rivals = ok[(ok["role"] == "rival") & (ok["strategy"] != BASELINE)]
    if comparison == PARAMETER_TUNING:
        pool = rivals[rivals["family"] == PARAMETER_TUNING]
        why = "no successful parameter-tuning runs (finetune, ewc, lwf)"
    else:
        if not math.isfinite(pnc_bytes):
            return pd.Series(dtype=float), ("pnc's memory is not recorded (records written "
                                            "before memory accounting)")
        memory = rivals.groupby("label")["total_bytes"].mean()
        fits = memory.index[memory <= pnc_bytes]
        pool = rivals[rivals["label"].isin(fits)]
        why = (f"no rival needs no more memory than pnc ({pnc_bytes:,.0f} bytes)" if
               memory.notna().any() else "the rivals' memory is not recorded")
    return pool.groupby("label")["final_accuracy"].mean().dropna(), why


def _supports(verdicts: tuple[str, str]):
    if any(v == "undefined" for v in verdicts):
        return np.nan if all(v == "undefined" or v.startswith("supported")
                             for v in verdicts) else False
    return all(v.startswith("supported") for v in verdicts)


def _compare(by_seed: SeedValues, stream: str, base: str, rival: str, claimed_points: float,
             claimed_gain: float, confidence: float) -> dict:
    acc_x, acc_y = by_seed.paired(stream, base, rival, "final_accuracy")
    loc_x, loc_y = by_seed.paired(stream, base, rival, "locality")
    diff = stats.mean_interval(100 * (acc_x - acc_y), confidence)
    loc_diff = stats.mean_interval(100 * (loc_x - loc_y), confidence)
    loc_pnc, loc_rival = (stats.mean_interval(v, confidence) for v in (loc_x, loc_y))
    reasons = []
    if diff.n < 2:
        reasons.append(f"accuracy: {diff.n} paired seed(s), an interval needs 2")
    row = dict(n_pairs=diff.n, accuracy_pnc=float(np.mean(acc_x)) if len(acc_x) else np.nan,
               accuracy_rival=float(np.mean(acc_y)) if len(acc_y) else np.nan,
               accuracy_difference_points=diff.mean, accuracy_difference_low=diff.low,
               accuracy_difference_high=diff.high,
               accuracy_verdict=claim_verdict(diff.low, diff.high, claimed_points, " points"),
               locality_pnc=loc_pnc.mean, locality_rival=loc_rival.mean,
               locality_rival_low=loc_rival.low, locality_rival_high=loc_rival.high,
               locality_difference_points=loc_diff.mean, locality_difference_low=loc_diff.low,
               locality_difference_high=loc_diff.high)
    ratio = stats.ratio_interval(loc_x, loc_y, confidence)
    if math.isfinite(loc_rival.low) and loc_rival.low > 0 and math.isfinite(ratio.low):
        row.update(locality_gain=ratio.ratio - 1, locality_gain_low=ratio.low - 1,
                   locality_gain_high=ratio.high - 1,
                   locality_verdict=claim_verdict(100 * (ratio.low - 1), 100 * (ratio.high - 1),
                                                  100 * claimed_gain, "%"))
    else:
        reasons.append("locality: no relative gain, " + (
            f"its interval is undefined ({ratio.reason})" if math.isfinite(loc_rival.low)
            and loc_rival.low > 0 else "the rival's locality interval includes 0"))
        row["locality_verdict"] = locality_verdict_without_ratio(loc_diff, loc_pnc, loc_rival,
                                                                 claimed_gain)
    row["supports_claim"] = _supports((row["accuracy_verdict"], row["locality_verdict"]))
    row["reason"] = "; ".join(reasons)
    return row


def claim_table(runs: pd.DataFrame, confidence: float = stats.CONFIDENCE,
                claimed_points: float = CLAIMED_POINTS,
                claimed_gain: float = CLAIMED_GAIN) -> pd.DataFrame:
    """Per stream, one row per comparison (``parameter-tuning``, ``memory``): PNC against the
    best candidate, paired by seed:

    - accuracy difference in points, 100 (A_T^pnc - A_T^rival), with its interval;
    - locality difference in points, 100 (L^pnc - L^rival), with its interval, and the
      relative gain (mean L^pnc - mean L^rival) / mean L^rival with Fieller's interval, only
      when the rival's locality interval excludes 0.

    ``supports_claim`` is True when both verdicts read "supported", False when either is a
    defined verdict that is not, and NaN when undefined.
    """
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        base, why = baseline_label(runs, stream)
        ok = runs[(runs["stream"] == stream) & (runs["status"] == "ok")]
        pnc_bytes = float(ok.loc[ok["label"] == base, "total_bytes"].mean()) if base else np.nan
        for comparison in COMPARISONS:
            row = {"stream": stream, "comparison": comparison, "pnc": base,
                   "pnc_total_bytes": pnc_bytes}
            cands, none_why = _candidates(ok, comparison, pnc_bytes)
            row["candidates"] = ", ".join(cands.index)
            if base is None or cands.empty:
                row["reason"] = why if base is None else none_why
                rows.append(row)
                continue
            rival = cands.idxmax()
            row.update(rival=rival,
                       rival_total_bytes=float(ok.loc[ok["label"] == rival,
                                                      "total_bytes"].mean()))
            row.update(_compare(by_seed, stream, base, rival, claimed_points, claimed_gain,
                                confidence))
            rows.append(row)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
