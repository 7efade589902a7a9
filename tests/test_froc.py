"""FROC / CPM (LUNA16 rule), ECE, temperature scaling and ROC AUC."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.training import froc as F


def _scan(lesions, cands):
    t = F.ScanTruth(np.array([c for c, _ in lesions], float).reshape(-1, 3), [d for _, d in lesions])
    d = F.ScanDetections(np.array([c for c, _ in cands], float).reshape(-1, 3), [s for _, s in cands])
    return t, d


def test_hit_rule_uses_radius_and_counts_each_lesion_once():
    t, d = _scan([((0, 0, 0), 10.0)], [((4.9, 0, 0), 0.9), ((0, 4.0, 0), 0.8), ((5.1, 0, 0), 0.7)])
    is_tp, best = F.match_candidates(t, d)
    assert is_tp.tolist() == [True, True, False]
    assert best.tolist() == [0.9]
    r = F.froc([t], [d])
    # the second hit is not a false positive; the candidate at 5.1 mm is
    assert r.n_lesions == 1
    assert r.sens_at[1.0] == 1.0
    assert r.fps_per_scan[-1] == 1.0


def test_cpm_of_a_known_curve():
    # 4 scans, 4 lesions; scores chosen so the curve is easy to follow
    scans = [
        _scan([((0, 0, 0), 8.0)], [((0, 0, 0), 0.95), ((40, 0, 0), 0.6)]),
        _scan([((0, 0, 0), 8.0)], [((0, 0, 0), 0.5), ((40, 0, 0), 0.9)]),
        _scan([((0, 0, 0), 8.0)], [((0, 0, 0), 0.3)]),
        _scan([((0, 0, 0), 8.0)], []),
    ]
    r = F.froc([s[0] for s in scans], [s[1] for s in scans])
    # thresholds: .95 (tp1, fp0), .9 (fp 1/4), .6 (fp 2/4), .5 (tp2), .3 (tp3)
    assert r.sens_at[0.125] == pytest.approx(np.interp(0.125, [0, 0, 0.25], [0, 0.25, 0.25]))
    assert r.sens_at[0.5] == pytest.approx(0.75)
    assert r.sens_at[8.0] == pytest.approx(0.75)  # the 4th lesion is never found
    assert 0.0 < r.cpm < 0.75 + 1e-9


def test_lesion_free_scans_only_add_false_positives():
    t1, d1 = _scan([((0, 0, 0), 10.0)], [((0, 0, 0), 0.9)])
    t2, d2 = _scan([], [((0, 0, 0), 0.95)])
    r = F.froc([t1, t2], [d1, d2])
    assert r.n_scans == 2 and r.n_lesions == 1
    assert r.sens_at[0.125] < 1.0  # the FP at 0.95 comes first
    assert r.sens_at[0.5] == 1.0


def test_ece_zero_for_perfect_and_large_for_overconfident():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = rng.uniform(0, 1, 20000) < p
    ece, table = F.expected_calibration_error(p, y)
    assert ece < 0.02
    assert sum(b["count"] for b in table) == 20000
    ece_bad, _ = F.expected_calibration_error(np.full(1000, 0.95), np.arange(1000) < 500)
    assert ece_bad == pytest.approx(0.45)


def test_bootstrap_ece_brackets_the_ece_and_widens_with_fewer_scans():
    rng = np.random.default_rng(2)

    def scans(n):
        confs = [rng.uniform(0.05, 1, 6) for _ in range(n)]
        hits = [rng.uniform(0, 1, 6) < np.clip(c - 0.1, 0, 1) for c in confs]  # a little overconfident
        return confs, hits

    confs, hits = scans(200)
    ece, _ = F.expected_calibration_error(np.concatenate(confs), np.concatenate(hits))
    lo, hi = F.bootstrap_ece(confs, hits, n_boot=200)
    assert lo <= ece <= hi and hi - lo < 0.08
    few_c, few_h = confs[:12], hits[:12]
    lo2, hi2 = F.bootstrap_ece(few_c, few_h, n_boot=200)
    assert hi2 - lo2 > hi - lo
    # findings below the confidence floor are left out, as in the reported ECE
    lo3, hi3 = F.bootstrap_ece([np.array([0.01, 0.9])], [np.array([True, True])], n_boot=20)
    assert lo3 == hi3 == pytest.approx(0.1)
    assert F.bootstrap_ece([], [], n_boot=20) == (0.0, 0.0)
    with pytest.raises(ValueError, match="per finding"):
        F.bootstrap_ece([np.array([0.5])], [np.array([True, False])])


def test_temperature_fit_recovers_scale():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 20000)
    y = rng.uniform(0, 1, z.size) < 1 / (1 + np.exp(-(z / 2.0 - 0.5)))
    t, b = F.fit_temperature(z, y)
    assert t == pytest.approx(2.0, rel=0.1)
    assert b == pytest.approx(-0.5, abs=0.1)


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(2)
    s = rng.normal(size=60).round(1)
    y = rng.uniform(size=60) < 0.4
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert F.roc_auc(s, y) == pytest.approx(pairs)
    fpr, tpr = F.roc_curve(s, y)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairs)


def test_cross_validated_auc_separates_informative_features():
    rng = np.random.default_rng(3)
    y = np.arange(80) % 2
    x = np.c_[y + rng.normal(0, 0.5, 80), rng.normal(size=80)]
    auc, folds = F.cross_validated_auc(x, y, k=5)
    assert auc > 0.85 and len(folds) == 5
    auc_noise, _ = F.cross_validated_auc(rng.normal(size=(80, 2)), y, k=5)
    assert auc_noise < 0.75
