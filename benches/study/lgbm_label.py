"""Which label, history and tree settings let the pooled LightGBM order the 30 real tickers?

A fast stand-in for the walk-forward (scripts/walkforward.sh takes an hour per try): the same
features (krxflow's features_daily), the same labels (close[t+h] / close[t] - 1 over each code's
own bars in ohlcv_daily), the same split (newest 20% of dates for validation, or at most
`valid_days` of them, h dates purged, early stopping after 30 rounds), retrained every STEP trading days (20: monthly, where the
pipeline retrains weekly) on rows whose label closed before the first day it predicts. It
reports each variant's mean daily Rank IC (Spearman across codes, predicted vs realised) and
its t-statistic over a range of days.

Used to choose retrain_weekly.yaml's settings on 2013-2018 (before the walk-forward's years),
then to show how they did on 2019-2024:

    scripts/lgbm_study.sh       # builds the features lake, then runs this for both periods

    python lgbm_label.py LAKE FROM TO H VARIANT...
"""
import sys
import time

import lightgbm as lgb
import numpy as np
import polars as pl
from deltalake import DeltaTable

FEATURES = (
    "ret_1d ret_3d ret_5d ret_10d ret_20d logret_1d logret_5d logret_20d ma5_ratio ma20_ratio "
    "ma60_ratio rsi14 macd macd_signal macd_hist bb_pctb atr14_norm vol_20d volume_z20 "
    "turnover_chg hl_range gap_open close_loc dist_52w_high dist_52w_low dow mkt_ret_1d mkt_ret_5d "
    "beta_60d rel_strength_20d sent_n_articles sent_mean sent_weighted sent_pos_ratio "
    "sent_neg_ratio sent_decay3"
).split()
# lgbm.train's defaults (crates/models/src/lgbm.rs), two threads.
DEFAULTS = dict(
    objective="regression", learning_rate=0.05, num_leaves=15, min_data_in_leaf=20,
    feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1, lambda_l2=1.0, seed=42,
    deterministic=True, force_row_wise=True, verbosity=-1, num_threads=2,
)
# retrain_weekly.yaml's lgbm_params.
SLOW = dict(num_leaves=7, min_data_in_leaf=500, learning_rate=0.02, feature_fraction=0.5, lambda_l2=10)
VARIANTS = {
    "raw": dict(target="raw"),
    "excess": dict(target="excess"),
    "rank": dict(target="rank"),
    "raw-750d": dict(target="raw", lookback=750),
    "rank-750d": dict(target="rank", lookback=750),
    "rank-1250d": dict(target="rank", lookback=1250),
    "rank-2000d": dict(target="rank", lookback=2000),
    "rank-750d-slow": dict(target="rank", lookback=750, params=SLOW),
    "rank-1250d-slow": dict(target="rank", lookback=1250, params=SLOW),
    "raw-750d-slow": dict(target="raw", lookback=750, params=SLOW),
    "rank-500d-slow": dict(target="rank", lookback=500, params=SLOW),
    # The label of a longer horizon (its smoother ranks) for this horizon's forecasts.
    "rank3-750d-slow": dict(target="rank", lookback=750, params=SLOW, label_h=3),
    "rank5-750d-slow": dict(target="rank", lookback=750, params=SLOW, label_h=5),
    # Each feature's rank among the day's codes beside its value.
    "rank-750d-slow-cs": dict(target="rank", lookback=750, params=SLOW, cs=True),
    # Without the close's location in the day's range (the features before it was added).
    "rank-750d-slow-noloc": dict(target="rank", lookback=750, params=SLOW, drop=["close_loc"]),
    "raw-noloc": dict(target="raw", drop=["close_loc"]),
    # Session 20: the chosen settings with five seeds averaged (feature and row sampling).
    "rank-750d-slow-bag5": dict(target="rank", lookback=750, params=SLOW, bag=5),
    # LambdaRank over each day's codes, the day's return ranks in 5 grades (quintiles).
    "lambdarank5-750d-slow": dict(target="rank", lookback=750, params=SLOW, grades=5),
    # All history, each row weighted 0.5 ** (its age in trading days / half-life). Validated
    # on the newest 20% of all dates (years of them: the training rows end years back) ...
    "rank-all-slow-hl250": dict(target="rank", params=SLOW, halflife=250),
    "rank-all-slow-hl500": dict(target="rank", params=SLOW, halflife=500),
    "rank-all-slow-hl1000": dict(target="rank", params=SLOW, halflife=1000),
    # ... or on the newest 150 dates, as the 750-day variants are (20% of 750).
    "rank-all-slow-v150": dict(target="rank", params=SLOW, valid_days=150),
    "rank-all-slow-hl500-v150": dict(target="rank", params=SLOW, halflife=500, valid_days=150),
    "rank-all-slow-hl1000-v150": dict(target="rank", params=SLOW, halflife=1000, valid_days=150),
    "rank-all-slow-hl2000-v150": dict(target="rank", params=SLOW, halflife=2000, valid_days=150),
    # Session 23: the same with a linear model in each leaf (LightGBM's `linear_tree`), the
    # leaves' coefficients ridge-penalised by `linear_lambda`.
    "rank-all-slow-hl500-v150-lt": dict(target="rank", params={**SLOW, "linear_tree": True},
                                        halflife=500, valid_days=150),
    "rank-all-slow-hl500-v150-lt10": dict(target="rank", params={**SLOW, "linear_tree": True, "linear_lambda": 10},
                                          halflife=500, valid_days=150),
    # beta_60d over the pairs present in its 60 rows when at least 40 are (features.build
    # needs all 60: a day missing from the index blanks the next 60 rows' beta).
    "rank-750d-slow-beta40": dict(target="rank", lookback=750, params=SLOW, beta_min=40),
}
MIN_CODES = 5  # target.rs's MIN_CODES_FOR_EXCESS
STEP = 20


def panel(lake, h, lh):
    feats = pl.from_arrow(DeltaTable(f"{lake}/features_daily").to_pyarrow_table())
    feats = feats.filter(~pl.col("warmup").fill_null(False)).select(["code", "date", *FEATURES])
    bars = pl.from_arrow(DeltaTable(f"{lake}/ohlcv_daily").to_pyarrow_table())
    bars = (
        bars.select(["code", "date", "close"])
        .filter(pl.col("close") > 0)
        .unique(["code", "date"])
        .sort(["code", "date"])
        .with_columns(
            (pl.col("close").shift(-h).over("code") / pl.col("close") - 1).alias("y"),
            pl.col("date").shift(-h).over("code").alias("matures"),
            (pl.col("close").shift(-lh).over("code") / pl.col("close") - 1).alias("y_label"),
            pl.col("date").shift(-lh).over("code").alias("label_matures"),
        )
    )
    return feats.join(bars, on=["code", "date"], how="inner").sort(["date", "code"])


def per_date(df, col, how):
    """The label of each row restated per date (None where fewer than MIN_CODES are labelled)."""
    n = pl.col(col).count().over("date")
    if how == "excess":
        e = pl.col(col) - pl.col(col).median().over("date")
    else:  # centred rank, ties averaged
        e = (pl.col(col).rank("average").over("date") - 0.5) / n - 0.5
    return df.select(pl.when(n >= MIN_CODES).then(e).otherwise(None)).to_series().to_numpy()


def daily_rank_ic(dates, pred, y):
    d = pl.DataFrame({"d": dates, "p": pred, "y": y}).drop_nulls().drop_nans()
    ic = (
        d.with_columns(pl.col("p").rank().over("d"), pl.col("y").rank().over("d"))
        .group_by("d")
        .agg(pl.corr("p", "y"), pl.len())
        .filter(pl.col("len") >= MIN_CODES)
        .get_column("p")
        .fill_nan(0.0)  # a constant forecast orders nothing
        .to_numpy()
    )
    return ic.mean(), ic.mean() / ic.std() * np.sqrt(len(ic)), len(ic)


def pairwise_beta(df, least, n=60):
    """beta_60d over the rows of its window where both returns are present, if >= `least`."""
    both = pl.col("ret_1d").is_not_null() & pl.col("mkt_ret_1d").is_not_null()
    r = pl.when(both).then(pl.col("ret_1d")).otherwise(0.0)
    m = pl.when(both).then(pl.col("mkt_ret_1d")).otherwise(0.0)
    s = lambda e: e.rolling_sum(n).over("code")  # rows are in date order within a code
    k, sr, sm, srm, smm = s(both.cast(pl.Float64)), s(r), s(m), s(r * m), s(m * m)
    cov, var = srm - sr * sm / k, smm - sm * sm / k
    return df.with_columns(
        pl.when((k >= least) & (var > 0)).then(cov / var).otherwise(None).alias("beta_60d")
    )


def fit_predict(x, tgt, dates, age, tr, va, sel, params, v):
    """The variant's model(s) trained on `tr` (early stopping on `va`), predicting `sel`."""
    pred, iters = np.zeros(sel.sum()), []
    for seed in range(v.get("bag", 1)):
        p = {**params, "seed": params["seed"] + seed}
        lab, group = tgt, lambda m: None
        if "grades" in v:  # LambdaRank: each day's codes are a query, graded by return rank
            p.update(objective="lambdarank", metric="ndcg", eval_at=[5])
            lab = np.clip(np.floor((np.nan_to_num(tgt) + 0.5) * v["grades"]), 0, v["grades"] - 1)
            group = lambda m: np.unique(dates[m], return_counts=True)[1]
        weight = None if "halflife" not in v else 0.5 ** (age[tr] / v["halflife"])
        dtr = lgb.Dataset(x[tr], lab[tr], weight=weight, group=group(tr))
        dva = lgb.Dataset(x[va], lab[va], group=group(va), reference=dtr)
        b = lgb.train(p, dtr, 500, valid_sets=[dva],
                      callbacks=[lgb.early_stopping(30, verbose=False)])
        iters.append(b.best_iteration)
        pred += b.predict(x[sel], num_iteration=b.best_iteration)
    return pred, int(np.median(iters))


def run(df, h, lo, hi, v):
    if "beta_min" in v:
        df = pairwise_beta(df, v["beta_min"])
    dates = df["date"].to_numpy()
    matures = df["label_matures"].to_numpy()
    y = df["y"].to_numpy()
    yl = df["y_label"].to_numpy()
    tgt = yl if v["target"] == "raw" else per_date(df, "y_label", v["target"])
    h = v.get("label_h", h)  # the purge between training and validation
    cols = [f for f in FEATURES if f not in v.get("drop", [])]
    if v.get("cs"):
        coded = [f for f in cols if f not in ("dow", "mkt_ret_1d", "mkt_ret_5d")]
        df = df.with_columns(
            ((pl.col(f).rank("average").over("date") - 0.5) / pl.col(f).count().over("date") - 0.5)
            .alias(f"cs_{f}")
            for f in coded
        )
        cols = cols + [f"cs_{f}" for f in coded]
    x = df.select(cols).to_numpy().astype(float)
    params = {**DEFAULTS, **v.get("params", {})}
    all_dates = np.unique(dates)
    day_no = np.searchsorted(all_dates, dates)  # each row's trading day, counted from the first
    days = all_dates[(all_dates >= lo) & (all_dates <= hi)]
    pred = np.full(len(y), np.nan)
    iters = []
    for k in range(0, len(days), STEP):
        first, last = days[k], days[min(k + STEP, len(days)) - 1]
        known = (matures < first) & ~np.isnan(tgt)
        if "lookback" in v:
            seen = all_dates[all_dates < first]
            known &= dates >= seen[max(0, len(seen) - v["lookback"])]
        kd = np.unique(dates[known])
        nv = min(int(len(kd) * 0.2), v.get("valid_days", len(kd)))
        valid_from, train_end = kd[len(kd) - nv], kd[len(kd) - nv - h]
        tr, va = known & (dates < train_end), known & (dates >= valid_from)
        sel = (dates >= first) & (dates <= last)
        age = np.searchsorted(all_dates, first) - day_no  # trading days before the retrain
        pred[sel], it = fit_predict(x, tgt, dates, age, tr, va, sel, params, v)
        iters.append(it)
    ev = (dates >= lo) & (dates <= hi)
    return (*daily_rank_ic(dates[ev], pred[ev], y[ev]), int(np.median(iters)))


def main():
    lake, lo, hi, h = sys.argv[1], np.datetime64(sys.argv[2]), np.datetime64(sys.argv[3]), int(sys.argv[4])
    for name in sys.argv[5:]:
        df = panel(lake, h, VARIANTS[name].get("label_h", h))
        t0 = time.time()
        ic, t, n, it = run(df, h, lo, hi, VARIANTS[name])
        print(f"| {sys.argv[2]}..{sys.argv[3]} | {h} | {name} | {ic:+.4f} | {t:.1f} | {n} | {it} | {time.time() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
