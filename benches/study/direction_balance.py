"""Should LightGBM's direction classifier be trained with its classes balanced?

Issue 16 asks about the `direction` classifier's class balance. At 1 day its three classes
(down / flat / up, with the ±0.3% flat band) are far from even: "flat" is about 15% of the
rows, and the classifier as built never calls it. Weighting the rows by the inverse of their
class's frequency (scikit-learn's `class_weight="balanced"`) or its square root makes the
classes count evenly in the loss. That makes the model call "flat" (and the rarer side) more
often; whether that raises the hit rate, the number the ensemble's direction is judged by, is
what this measures.

The stand-in is `lgbm_label.py`'s (krxflow's own `features_daily` and closes, the same
split, purge and early stopping, a retrain every 20 trading days), with the classifier as
`retrain_weekly.yaml` trains it: all history, validated on the newest 150 dates, `lgbm.train`'s
default parameters, multiclass over down = 0, flat = 1, up = 2. For each variant and period
it prints the hit rate of the argmax call (the ensemble's rule), how often each class is
called, the multiclass log loss, and "always up" on the same rows; for the balanced variants,
the hit rate once their probabilities are put back on the training rows' class frequencies
(p_k · f_k / w_k, renormalised: what balancing does to the argmax, undone); and the hit rate
once each day's probabilities are moved to the classes' frequencies over the last 20, 60 or
250 trading days (`prior_shift`: the market's recent direction as the prior).

    .venv-peer-daily/bin/python benches/study/direction_balance.py LAKE FROM TO H [VARIANT...]

The lake is `scripts/lgbm_study.sh`'s (its first two commands: one cold daily batch on the
30 real tickers).
"""
import sys
import time

import lightgbm as lgb
import numpy as np

from lgbm_label import DEFAULTS, FEATURES, STEP, panel

BAND = 0.003
EDGE = 1e-9  # krxflow_models::lgbm::BAND_EDGE_TOLERANCE: a move of exactly 0.3% is flat
VALID_DAYS = 150
SHIFT_WINDOWS = (20, 60, 250)
VARIANTS = {
    "as built": None,
    "balanced": 1.0,  # weight 1 / f_k
    "sqrt-balanced": 0.5,  # weight 1 / sqrt(f_k)
}


def classes(y):
    c = np.full(len(y), np.nan)
    ok = ~np.isnan(y)
    c[ok] = np.where(y[ok] > BAND + EDGE, 2, np.where(y[ok] < -BAND - EDGE, 0, 1))
    return c


def prior_shift(dates, matures, cls, prob, ev, window):
    """The probabilities of the rows `ev` moved to the classes' recent frequencies (a label-shift
    correction, Saerens et al. 2002): p_k · r_k / a_k, renormalised, where r_k is class k's
    share among the outcomes of the `window` trading days before the row's date that had
    matured by then, and a_k its share among every outcome matured by then (what the
    classifier, trained on all history, has learned as its prior)."""
    days = np.unique(dates)
    out = prob[ev].copy()
    rows = np.flatnonzero(ev)
    known = ~np.isnan(cls)
    for d in np.unique(dates[ev]):
        k = np.searchsorted(days, d)
        seen = known & (matures < d)
        recent = seen & (dates >= days[max(0, k - window)])
        if recent.sum() < 100:
            continue
        r = np.array([(cls[recent] == j).mean() for j in range(3)])
        a = np.array([(cls[seen] == j).mean() for j in range(3)])
        at = dates[rows] == d
        q = out[at] * (r / a)
        out[at] = q / q.sum(axis=1, keepdims=True)
    return out


def run(df, h, lo, hi, power):
    dates = df["date"].to_numpy()
    matures = df["matures"].to_numpy()
    y = df["y"].to_numpy()
    cls = classes(y)
    x = df.select(FEATURES).to_numpy().astype(float)
    params = {**DEFAULTS, "objective": "multiclass", "num_class": 3}
    all_dates = np.unique(dates)
    days = all_dates[(all_dates >= lo) & (all_dates <= hi)]
    prob = np.full((len(y), 3), np.nan)
    undone = np.full((len(y), 3), np.nan)
    for k in range(0, len(days), STEP):
        first, last = days[k], days[min(k + STEP, len(days)) - 1]
        known = (matures < first) & ~np.isnan(cls)
        kd = np.unique(dates[known])
        nv = min(int(len(kd) * 0.2), VALID_DAYS)
        valid_from, train_end = kd[len(kd) - nv], kd[len(kd) - nv - h]
        tr, va = known & (dates < train_end), known & (dates >= valid_from)
        sel = (dates >= first) & (dates <= last)
        freq = np.array([(cls[tr] == j).mean() for j in range(3)])
        w = np.ones(3) if power is None else freq ** -power
        dtr = lgb.Dataset(x[tr], cls[tr], weight=w[cls[tr].astype(int)])
        dva = lgb.Dataset(x[va], cls[va], weight=w[cls[va].astype(int)], reference=dtr)
        b = lgb.train(params, dtr, 500, valid_sets=[dva],
                      callbacks=[lgb.early_stopping(30, verbose=False)])
        p = b.predict(x[sel], num_iteration=b.best_iteration)
        prob[sel] = p
        q = p / w  # the weighted loss fits p_k ∝ w_k · P(k): divide the weights back out
        undone[sel] = q / q.sum(axis=1, keepdims=True)
    ev = (dates >= lo) & (dates <= hi) & ~np.isnan(cls) & ~np.isnan(prob[:, 0])
    shifted = {n: prior_shift(dates, matures, cls, prob, ev, n) for n in SHIFT_WINDOWS}
    c, p, u = cls[ev].astype(int), prob[ev], undone[ev]
    call = p.argmax(axis=1)
    mix = np.bincount(call, minlength=3) / len(call)
    logloss = -np.mean(np.log(np.clip(p[np.arange(len(c)), c], 1e-15, 1)))
    return dict(n=len(c), hit=(call == c).mean(), hit_undone=(u.argmax(axis=1) == c).mean(),
                shifted={n: (q.argmax(axis=1) == c).mean() for n, q in shifted.items()},
                up=(c == 2).mean(), mix=mix, logloss=logloss,
                actual=np.bincount(c, minlength=3) / len(c))


def main():
    lake, lo, hi, h = sys.argv[1], np.datetime64(sys.argv[2]), np.datetime64(sys.argv[3]), int(sys.argv[4])
    names = sys.argv[5:] or list(VARIANTS)
    df = panel(lake, h, h)
    print("| days | h | variant | n | hit (argmax) | hit, frequencies restored |"
          f" hit, prior shifted to the last {' / '.join(map(str, SHIFT_WINDOWS))} days |"
          " always up | called down / flat / up | actual down / flat / up | log loss | time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        t0 = time.time()
        r = run(df, h, lo, hi, VARIANTS[name])
        undone = "" if VARIANTS[name] is None else f"{r['hit_undone']:.4f}"
        shifted = " / ".join(f"{r['shifted'][n]:.4f}" for n in SHIFT_WINDOWS)
        print(f"| {sys.argv[2]}..{sys.argv[3]} | {h} | {name} | {r['n']} | {r['hit']:.4f} | {undone} |"
              f" {shifted} |"
              f" {r['up']:.4f} | {' / '.join(f'{m:.3f}' for m in r['mix'])} |"
              f" {' / '.join(f'{m:.3f}' for m in r['actual'])} | {r['logloss']:.4f} |"
              f" {time.time() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
