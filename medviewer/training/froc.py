"""Detection metrics: FROC / CPM (LUNA16 rule), calibration (ECE), ROC AUC.

Only numpy and scipy (scikit-learn is not a dependency).

FROC with the LUNA16 rule
-------------------------
A candidate is a *hit* on a lesion when its centre lies within the lesion's
radius (distance <= diameter / 2, in mm). Several hits on one lesion count
once (the lesion is found at the highest score among its hits); a candidate
hitting no lesion is a false positive. Sweeping the score threshold gives
sensitivity against the mean number of false positives per scan; the
**CPM** (competition performance metric) is the mean sensitivity at
1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan, read off the curve by
linear interpolation as in the LUNA16 evaluation script.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from scipy.special import expit
from scipy.stats import rankdata

FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ScanTruth:
    """Reference lesions of one scan: centres (n, 3) in mm and diameters (n,) in mm."""

    centers_mm: NDArray[np.float64]
    diameters_mm: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.centers_mm = np.asarray(self.centers_mm, dtype=np.float64).reshape(-1, 3)
        self.diameters_mm = np.asarray(self.diameters_mm, dtype=np.float64).reshape(-1)
        if len(self.centers_mm) != len(self.diameters_mm):
            raise ValueError("centers_mm and diameters_mm differ in length")


@dataclass
class ScanDetections:
    """Candidates of one scan: centres (m, 3) in mm and scores (m,)."""

    centers_mm: NDArray[np.float64]
    scores: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.centers_mm = np.asarray(self.centers_mm, dtype=np.float64).reshape(-1, 3)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.centers_mm) != len(self.scores):
            raise ValueError("centers_mm and scores differ in length")


def match_candidates(truth: ScanTruth, det: ScanDetections) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Apply the LUNA16 hit rule to one scan.

    Returns
    -------
    is_tp : ndarray of bool, (m,)
        Candidate hits at least one lesion.
    lesion_score : ndarray, (n,)
        Best score among the hits on each lesion, ``-inf`` when missed.
    """
    m, n = len(det.scores), len(truth.diameters_mm)
    if m == 0 or n == 0:
        return np.zeros(m, bool), np.full(n, -np.inf)
    d = np.linalg.norm(det.centers_mm[:, None, :] - truth.centers_mm[None, :, :], axis=-1)
    hit = d <= (truth.diameters_mm[None, :] / 2.0)
    is_tp = hit.any(axis=1)
    scores = np.where(hit, det.scores[:, None], -np.inf)
    return is_tp, scores.max(axis=0)


@dataclass
class FrocResult:
    """FROC curve and the LUNA16 summary."""

    fps_per_scan: NDArray[np.float64]
    sensitivity: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    sens_at: dict[float, float]
    cpm: float
    n_scans: int
    n_lesions: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "cpm": round(self.cpm, 4),
            "sensitivity_at_fp": {str(k): round(v, 4) for k, v in self.sens_at.items()},
            "n_scans": self.n_scans,
            "n_lesions": self.n_lesions,
            **self.extra,
        }


def froc(truths: Sequence[ScanTruth], dets: Sequence[ScanDetections], fp_rates: Sequence[float] = FP_RATES) -> FrocResult:
    """FROC curve, sensitivities at ``fp_rates`` and CPM over a set of scans.

    Parameters
    ----------
    truths, dets : sequences of equal length
        Reference lesions and candidates per scan (lesion-free scans have no
        lesions and still count in the FP-per-scan denominator).
    fp_rates : sequence of float

    Returns
    -------
    FrocResult

    Examples
    --------
    >>> t = [ScanTruth([[0, 0, 0]], [10.0]), ScanTruth(np.zeros((0, 3)), [])]
    >>> d = [ScanDetections([[1, 0, 0], [50, 0, 0]], [0.9, 0.2]), ScanDetections([[0, 0, 0]], [0.5])]
    >>> r = froc(t, d)
    >>> r.n_lesions, r.sens_at[1.0], r.cpm
    (1, 1.0, 1.0)
    """
    if len(truths) != len(dets):
        raise ValueError("truths and dets differ in length")
    n_scans = len(truths)
    fp_scores: list[NDArray[np.float64]] = []
    lesion_scores: list[NDArray[np.float64]] = []
    for t, d in zip(truths, dets):
        is_tp, ls = match_candidates(t, d)
        fp_scores.append(d.scores[~is_tp])
        lesion_scores.append(ls)
    fp = np.concatenate(fp_scores) if fp_scores else np.zeros(0)
    les = np.concatenate(lesion_scores) if lesion_scores else np.zeros(0)
    n_les = len(les)
    thr = np.unique(np.concatenate([fp, les[np.isfinite(les)]]))[::-1]
    if n_scans == 0 or n_les == 0:
        return FrocResult(np.zeros(0), np.zeros(0), thr, {float(r): 0.0 for r in fp_rates}, 0.0, n_scans, n_les)
    fp_sorted = np.sort(fp)
    les_sorted = np.sort(les[np.isfinite(les)])
    # number of items with score >= t
    n_fp = len(fp_sorted) - np.searchsorted(fp_sorted, thr, side="left")
    n_tp = len(les_sorted) - np.searchsorted(les_sorted, thr, side="left")
    fps = np.concatenate([[0.0], n_fp / n_scans])
    sens = np.concatenate([[0.0], n_tp / n_les])
    thr_full = np.concatenate([[np.inf], thr])
    sens_at: dict[float, float] = {}
    for r in fp_rates:
        if fps[-1] < r:
            # curve ends before this rate: sensitivity stays at its final value
            sens_at[float(r)] = float(sens[-1])
        else:
            sens_at[float(r)] = float(np.interp(r, fps, sens))
    cpm = float(np.mean(list(sens_at.values())))
    return FrocResult(fps, sens, thr_full, sens_at, cpm, n_scans, n_les)


def bootstrap_cpm(
    truths: Sequence[ScanTruth], dets: Sequence[ScanDetections], n_boot: int = 200, seed: int = 0
) -> tuple[float, float]:
    """95 % bootstrap interval of the CPM (scans resampled with replacement)."""
    return _bootstrap_interval(len(truths), lambda idx: froc([truths[i] for i in idx], [dets[i] for i in idx]).cpm, n_boot, seed)


def _bootstrap_interval(n: int, statistic: Callable[[NDArray[np.int64]], float], n_boot: int, seed: int) -> tuple[float, float]:
    """2.5 and 97.5 percentiles of ``statistic`` over ``n_boot`` resamples (with replacement) of ``n`` scans."""
    rng = np.random.default_rng(seed)
    vals = [statistic(rng.integers(0, n, n)) for _ in range(n_boot if n else 0)]
    lo, hi = np.percentile(vals, [2.5, 97.5]) if vals else (0.0, 0.0)
    return float(lo), float(hi)


def bootstrap_ece(
    conf_by_scan: Sequence[ArrayLike],
    hit_by_scan: Sequence[ArrayLike],
    min_confidence: float = 0.05,
    n_boot: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % bootstrap interval of the ECE of findings with confidence >= ``min_confidence``.

    Scans are resampled with replacement, as in :func:`bootstrap_cpm`: the findings of one
    scan are not independent (one scan's anatomy raises several false candidates), so
    resampling single findings would understate the spread. The ECE of a small sample is
    biased upwards (it sums absolute per-bin gaps), so the interval tends to sit above the
    point estimate; read it as the spread, not as a corrected value.
    """
    confs = [np.asarray(c, np.float64).reshape(-1) for c in conf_by_scan]
    hits = [np.asarray(h, np.float64).reshape(-1) for h in hit_by_scan]
    if len(hits) != len(confs) or any(len(c) != len(h) for c, h in zip(confs, hits)):
        raise ValueError("one confidence and one hit flag per finding, per scan")

    def ece(idx: NDArray[np.int64]) -> float:
        p = np.concatenate([confs[i] for i in idx])
        y = np.concatenate([hits[i] for i in idx])
        keep = p >= min_confidence
        return expected_calibration_error(p[keep], y[keep])[0]

    return _bootstrap_interval(len(confs), ece, n_boot, seed)


# --------------------------------------------------------------------------- calibration
def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """ECE with ``n_bins`` equal-width bins, and the per-bin table.

    Returns
    -------
    ece : float
        ``sum_b (n_b / N) * |accuracy_b - confidence_b|``.
    bins : list of dict
        ``lo, hi, count, mean_confidence, accuracy`` per non-empty bin.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        return 0.0, []
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    ece = 0.0
    table = []
    for b in range(n_bins):
        sel = which == b
        if not sel.any():
            continue
        conf, acc = float(p[sel].mean()), float(y[sel].mean())
        ece += sel.mean() * abs(acc - conf)
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(sel.sum()), "mean_confidence": conf, "accuracy": acc})
    return float(ece), table


def fit_temperature(logits: ArrayLike, labels: ArrayLike, fit_bias: bool = True) -> tuple[float, float]:
    """Fit ``p = sigmoid(logit / T + b)`` by minimum negative log-likelihood.

    Parameters
    ----------
    logits, labels : array-like
        Raw scores and 0/1 outcomes of validation candidates.
    fit_bias : bool
        Also fit the offset ``b`` (Platt-style temperature scaling); else b = 0.

    Returns
    -------
    temperature, bias : float
        ``T`` is bounded to [0.05, 20] and ``b`` to [-10, 10] so perfectly
        separable validation data cannot drive them to infinity.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(z) == 0 or y.min() == y.max():
        return 1.0, 0.0

    def nll(params: NDArray[np.float64]) -> float:
        log_t = params[0]
        b = params[1] if fit_bias else 0.0
        s = z * np.exp(-log_t) + b
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    x0 = np.array([0.0, 0.0])
    bounds = [(math.log(0.05), math.log(20.0)), (-10.0, 10.0)]
    res = optimize.minimize(nll, x0, method="L-BFGS-B", bounds=bounds)
    t = float(np.exp(res.x[0]))
    return t, float(res.x[1]) if fit_bias else 0.0


# --------------------------------------------------------------------------- ROC
def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties).

    Examples
    --------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False- and true-positive rates over all thresholds (from (0,0) to (1,1))."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    thr = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) if y.any() else 0.0 for t in thr]
    fpr = [0.0] + [float((s[~y] >= t).mean()) if (~y).any() else 0.0 for t in thr]
    return np.array(fpr), np.array(tpr)


def _fit_logistic(x: NDArray[np.float64], y: NDArray[np.float64], l2: float = 1e-2) -> NDArray[np.float64]:
    xa = np.hstack([x, np.ones((len(x), 1))])

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = xa @ w
        p = expit(s)
        val = float(np.mean(np.logaddexp(0.0, s) - y * s) + l2 * np.sum(w[:-1] ** 2))
        grad = xa.T @ (p - y) / len(y)
        grad[:-1] += 2 * l2 * w[:-1]
        return val, grad

    res = optimize.minimize(loss, np.zeros(xa.shape[1]), jac=True, method="L-BFGS-B")
    return np.asarray(res.x)


def cross_validated_auc(features: ArrayLike, labels: ArrayLike, k: int = 5, seed: int = 0) -> tuple[float, list[float]]:
    """k-fold cross-validated ROC AUC of a logistic model on case-level features.

    Features are standardised on each training fold; the model's scores on the
    held-out folds are pooled into one AUC (and per-fold AUCs are returned
    where a fold has both classes). Folds are stratified by label.

    Returns
    -------
    pooled_auc : float
    fold_aucs : list of float
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(labels).astype(np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), int)
    for cls in (0.0, 1.0):
        idx = np.nonzero(y == cls)[0]
        rng.shuffle(idx)
        folds[idx] = np.arange(len(idx)) % k
    out = np.zeros(len(y))
    fold_aucs = []
    for f in range(k):
        te, tr = folds == f, folds != f
        if not te.any() or len(np.unique(y[tr])) < 2:
            continue
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        w = _fit_logistic((x[tr] - mu) / sd, y[tr])
        out[te] = np.hstack([(x[te] - mu) / sd, np.ones((te.sum(), 1))]) @ w
        a = roc_auc(out[te], y[te])
        if np.isfinite(a):
            fold_aucs.append(a)
    return roc_auc(out, y), fold_aucs


__all__ = [
    "FP_RATES",
    "ScanTruth",
    "ScanDetections",
    "match_candidates",
    "FrocResult",
    "froc",
    "bootstrap_cpm",
    "bootstrap_ece",
    "expected_calibration_error",
    "fit_temperature",
    "roc_auc",
    "roc_curve",
    "cross_validated_auc",
]
