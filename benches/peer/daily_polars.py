"""krxflow's full-market daily batch as a Polars user writes it (issue 18's end-to-end peer).

One new trading day D, from a lake warm with the days before it (the krxflow lake, read with
`deltalake`; the peer never writes there), in one process:

1. ingest: the panel's bars of D (the whole gzipped CSV read by Polars, D's rows validated:
   positive prices, low <= open/close <= high, volume >= 0; the rest counted as rejects) and the
   KOSPI index (Yahoo CSV);
2. features: the 36 documented features (docs/features.md) over each code's last 400 calendar
   days of bars, as grouped window expressions (features_polars.py) plus the market and
   sentiment ones; D's rows kept;
3. LightGBM: the pooled pair per horizon registered in the lake (trained before D), loaded with
   the `lightgbm` package, predicting D's non-warm-up rows;
4. ETS: statsforecast's AutoETS (additive error, none/additive/damped trend by AICc) on each
   code's last 250 log closes, Gaussian quantiles turned into prices, up/flat/down as krxflow
   derives them from nine quantiles;
5. ensemble: the latest valid learned weights before D (priors otherwise), the weighted blend,
   the rank-skill tilt of the point (60 latest daily Spearman ICs per member and horizon), the
   conformal band (volatility-normalised scores in three volatility bands, ACI replayed over a
   year of matured outcomes);
6. outcomes: predictions whose target lies in the last 10 trading days matched against the
   closes, with the members' rows;
7. weights: each member's hit rate over its last 60 outcomes per (code, horizon), shrunk toward
   the priors (k = 20), clipped to [0.05, 0.95].

The day's outputs are written as Parquet files under OUT (one file per table, rewritten by a
re-run). Not in the peer: the news ingest and its lexical scoring (the peer reads
`sentiment_daily` from the lake), `model_performance`, run/lineage bookkeeping.

    python daily_polars.py LAKE DAY PANEL INDEX_CSV OUT RUNS [CHECK_LAKE]

Prints one JSON line: each run's wall time and step times (seconds), the row counts, and with
CHECK_LAKE (the lake after krxflow ran D) the agreement of each step with krxflow's tables,
including the peer's ensemble recomputed on krxflow's own member forecasts. The constants, the
calendar, the quantile arithmetic, the conformal replay, the check and the driver are shared
with the pandas peer (daily_common.py).
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta

_t0 = time.perf_counter()
import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from statsforecast import StatsForecast  # noqa: E402
from statsforecast.models import AutoETS  # noqa: E402

import daily_common as common  # noqa: E402
import features_polars  # noqa: E402
from daily_common import (  # noqa: E402
    CONTEXT, FEATURES, FLAT_BAND, EDGE_TOL, HISTORY, HORIZONS, MIN_CONTEXT, PRIORS, Calendar,
    derive, read,
)

IMPORT_S = time.perf_counter() - _t0


# --- 1. ingest -----------------------------------------------------------------------------


def ingest(panel: str, index_csv: str, day: date) -> tuple[pl.DataFrame, pl.DataFrame, int, list]:
    raw = pl.read_csv(panel, schema_overrides={"code": pl.Utf8}, try_parse_dates=True)
    calendar_days = raw.get_column("date").unique().to_list()
    today = raw.filter(pl.col("date") == day)
    o, h, l, c, v = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))
    top, bottom = pl.max_horizontal(o, c), pl.min_horizontal(o, c)

    def tol(p: pl.Expr) -> pl.Expr:
        return pl.max_horizontal(pl.lit(2.0), p * 0.001)

    ok = (
        pl.all_horizontal([x.is_not_null() & x.is_finite() for x in (o, h, l, c, v)])
        & (v > 0) & (v == v.floor())
        & (o > 0) & (h > 0) & (l > 0) & (c > 0)
        & (h + tol(top) >= top) & (l - tol(bottom) <= bottom) & (h >= l)
    )
    # Highs and lows off by rounding are repaired; a code's second row for a day is rejected.
    bars = (
        today.filter(ok)
        .unique(["code", "date"], keep="first", maintain_order=True)
        .select("code", "date", "open", pl.max_horizontal(h, top).alias("high"),
                pl.min_horizontal(l, bottom).alias("low"), "close",
                pl.col("volume").cast(pl.Int64))
    )
    rejects = today.height - bars.height
    index = (
        pl.read_csv(index_csv, null_values=["null"], try_parse_dates=True)
        .select(pl.lit("KS11").alias("code"), pl.col("Date").alias("date"),
                pl.col("Close").alias("close"))
        .filter(pl.col("date") <= day)
    )
    return bars, index, rejects, calendar_days


# --- 2. features ---------------------------------------------------------------------------


def features(history: pl.DataFrame, index: pl.DataFrame, sent: pl.DataFrame | None,
             day: date):
    core = features_polars.compute(history)
    mkt = (
        index.sort("date")
        .filter(pl.col("close").is_not_null())
        .select(
            "date",
            (pl.col("close") / pl.col("close").shift(1) - 1).alias("mkt_ret_1d"),
            (pl.col("close") / pl.col("close").shift(5) - 1).alias("mkt_ret_5d"),
            (pl.col("close") / pl.col("close").shift(20) - 1).alias("_mkt20"),
        )
    )
    has_sent = sent is not None
    if sent is None:
        sent = pl.DataFrame(schema={"code": pl.Utf8, "date": pl.Date, "n_articles": pl.Int64,
                                    "mean_score": pl.Float64, "weighted_score": pl.Float64,
                                    "pos_ratio": pl.Float64, "neg_ratio": pl.Float64})
    s = sent.select(
        "code", "date",
        pl.col("n_articles").cast(pl.Float64).fill_null(0.0).alias("sent_n_articles"),
        pl.col("mean_score").alias("sent_mean"),
        pl.col("weighted_score").alias("sent_weighted"),
        pl.col("pos_ratio").alias("sent_pos_ratio"),
        pl.col("neg_ratio").alias("sent_neg_ratio"),
    )
    f = (
        core.lazy()
        .join(mkt.lazy(), on="date", how="left")
        .join(s.lazy(), on=["code", "date"], how="left")
        .sort("code", "date")
    )
    r, m = pl.col("ret_1d"), pl.col("mkt_ret_1d")
    pos = pl.int_range(pl.len()).over("code")
    both = (r.is_not_null() & m.is_not_null()).cast(pl.Int32)
    n = 60
    cov = pl.rolling_cov(r, m, window_size=n, ddof=1).over("code")
    var = m.rolling_var(n).over("code")
    full = both.rolling_sum(n).over("code") == n
    w = pl.col("sent_weighted")
    w0 = w.fill_null(0.0)
    f = f.with_columns(
        beta_60d=pl.when((pos >= n) & full & (var != 0)).then(cov / var),
        rel_strength_20d=pl.col("ret_20d") - pl.col("_mkt20"),
        sent_n_articles=pl.col("sent_n_articles").fill_null(0.0) if has_sent
        else pl.lit(None, pl.Float64),
        sent_decay3=(w0 + 0.5 * w0.shift(1).over("code").fill_null(0.0)
                     + 0.25 * w0.shift(2).over("code").fill_null(0.0)) if has_sent
        else pl.lit(None, pl.Float64),
    )
    out = f.filter(pl.col("date") == day).select("code", "date", *FEATURES).collect()
    warm = pl.any_horizontal([pl.col(c).is_null() for c in HISTORY])
    return out.with_columns(warmup=warm)


# --- 3. LightGBM ---------------------------------------------------------------------------


def lgbm_predict(lake: str, feats: pl.DataFrame, bars: pl.DataFrame, day: date, cal: Calendar):
    reg = read(lake, "model_registry").filter(
        (pl.col("kind") == "lgbm") & pl.col("model").str.starts_with("lgbm/pooled/")
        & (pl.col("trained_through") < day)
    )
    rows = feats.filter(~pl.col("warmup")).join(bars.select("code", "close"), on="code")
    x = rows.select(FEATURES).to_numpy().astype(np.float64)
    out = []
    for h in HORIZONS:
        name = f"lgbm/pooled/_all/h{h}"
        cand = reg.filter(pl.col("model") == name).sort("trained_through", "trained_at")
        if cand.height == 0 or rows.height == 0:
            continue
        r = cand.row(-1, named=True)
        base = os.path.join(lake, r["path"])
        card = json.load(open(os.path.join(base, "metrics.json")))
        ret = lgb.Booster(model_file=os.path.join(base, "regression.txt")).predict(
            x, num_threads=1)
        probs = lgb.Booster(model_file=os.path.join(base, "direction.txt")).predict(
            x, num_threads=1)
        ret = common.lgbm_returns(card, ret)
        lo = card["regression"].get("residual_q10") or 0.0
        hi = card["regression"].get("residual_q90") or 0.0
        close = rows.get_column("close").to_numpy()
        out.append(pl.DataFrame({
            "code": rows.get_column("code"),
            "horizon": np.full(rows.height, h, np.int32),
            "target_date": [cal.add(day, h)] * rows.height,
            "base_close": close,
            "predicted_return": ret,
            "predicted_close": close * (1 + ret),
            "q10": close * (1 + ret + lo),
            "q90": close * (1 + ret + hi),
            "prob_up": probs[:, 2],
            "prob_flat": probs[:, 1],
            "prob_down": probs[:, 0],
            "model_version": [card["version"]] * rows.height,
        }))
    if not out:
        return None
    return pl.concat(out).with_columns(base_date=pl.lit(day)).sort("code", "horizon")


# --- 4. ETS --------------------------------------------------------------------------------


def ets_forecast(history: pl.DataFrame, day: date, cal: Calendar, jobs: int):
    last = history.group_by("code").agg(pl.col("date").max().alias("_last"))
    series = (
        history.join(last, on="code")
        .filter((pl.col("_last") == day) & (pl.col("close") > 0))
        .sort("code", "date")
        .group_by("code", maintain_order=True).tail(CONTEXT)
    )
    counts = series.group_by("code").len()
    keep = counts.filter(pl.col("len") >= MIN_CONTEXT).get_column("code")
    series = series.filter(pl.col("code").is_in(keep.implode()))
    df = series.select(
        pl.col("code").alias("unique_id"),
        (pl.int_range(pl.len()).over("code") + 1).alias("ds"),
        pl.col("close").log().alias("y"),
    ).to_pandas()
    sf = StatsForecast(models=[AutoETS(season_length=1, model="AZN")], freq=1, n_jobs=jobs)
    fc = pl.from_pandas(sf.forecast(df=df, h=max(HORIZONS), level=[20, 40, 60, 80]))
    fc = fc.with_columns(step=pl.int_range(pl.len()).over("unique_id") + 1).filter(
        pl.col("step").is_in(list(HORIZONS)))
    cols = ["AutoETS-lo-80", "AutoETS-lo-60", "AutoETS-lo-40", "AutoETS-lo-20", "AutoETS",
            "AutoETS-hi-20", "AutoETS-hi-40", "AutoETS-hi-60", "AutoETS-hi-80"]
    closes = series.group_by("code").agg(pl.col("close").last().alias("base_close"))
    fc = fc.join(closes, left_on="unique_id", right_on="code")
    q = np.exp(fc.select(cols).to_numpy())
    d = derive(q, fc.get_column("base_close").to_numpy())
    return pl.DataFrame({
        "code": fc.get_column("unique_id"),
        "base_date": [day] * fc.height,
        "horizon": fc.get_column("step").cast(pl.Int32),
        "target_date": [cal.add(day, int(h)) for h in fc.get_column("step")],
        "base_close": fc.get_column("base_close"),
        "q10": q[:, 0], "q90": q[:, 8],
        **d,
    }).sort("code", "horizon")


# --- 5. ensemble ---------------------------------------------------------------------------


def weight_book(weights: pl.DataFrame, through: date) -> pl.DataFrame:
    """The latest valid set per (code, horizon) dated on or before `through`: (code, horizon,
    model, weight)."""
    w = weights.filter(pl.col("as_of") <= through).unique(
        ["code", "horizon", "as_of", "model"], keep="last", maintain_order=True)
    sets = w.group_by("code", "horizon", "as_of").agg(
        valid=(pl.col("weight").is_finite() & (pl.col("weight") >= 0)).all()
        & ((pl.col("weight").sum() - 1).abs() <= 1e-6))
    newest = (sets.filter("valid").group_by("code", "horizon")
              .agg(pl.col("as_of").max()))
    return w.join(newest, on=["code", "horizon", "as_of"]).select(
        "code", "horizon", "model", "weight")


def spearman_skills(outcomes: pl.DataFrame, day: date) -> pl.DataFrame:
    """(horizon, model, skill): the mean of the latest 60 daily Spearman ICs (>= 5 codes a
    date, >= 20 dates), matured before `day`."""
    o = outcomes.filter(
        (pl.col("model") != "ensemble") & (pl.col("target_date") < day)
        & (pl.col("base_date") < pl.col("target_date"))
        & (pl.col("base_close") > 0) & (pl.col("point") > 0) & (pl.col("actual_close") > 0)
    ).select(
        "model", "horizon", "base_date",
        (pl.col("point") / pl.col("base_close") - 1).alias("p"),
        (pl.col("actual_close") / pl.col("base_close") - 1).alias("y"),
    )
    g = ["model", "horizon", "base_date"]
    ics = (
        o.with_columns(rp=pl.col("p").rank("average").over(g),
                       ry=pl.col("y").rank("average").over(g))
        .group_by(g)
        .agg(n=pl.len(), ic=pl.corr("rp", "ry"))
        .filter((pl.col("n") >= 5) & pl.col("ic").is_not_nan() & pl.col("ic").is_not_null())
        .sort("base_date", descending=True)
        .group_by("model", "horizon")
        .agg(pl.col("ic").head(60))
    )
    return ics.filter(pl.col("ic").list.len() >= 20).select(
        "model", "horizon", skill=pl.col("ic").list.mean())


def matured_scores(outcomes: pl.DataFrame, vol: pl.DataFrame, day: date) -> pl.DataFrame:
    """Per horizon, the ensemble's matured raw bands rebuilt from the member rows at their
    weights, scored: (horizon, base, target, score, scale)."""
    m = outcomes.filter(
        (pl.col("model") != "ensemble") & (pl.col("target_date") < day)
        & pl.col("weight").is_not_null() & (pl.col("weight") > 0) & pl.col("weight").is_finite()
        & (pl.col("q10") > 0) & (pl.col("q90") > 0) & (pl.col("actual_close") > 0)
    )
    m = m.join(vol, left_on=["code", "base_date"], right_on=["code", "date"])
    w = pl.col("weight")
    g = (
        m.group_by("code", "base_date", "horizon")
        .agg(
            target=pl.col("target_date").first(),
            y=pl.col("actual_close").first(),
            v=pl.col("vol_20d").first(),
            q10=(w * pl.col("q10")).sum() / w.sum(),
            q90=(w * pl.col("q90")).sum() / w.sum(),
        )
        .with_columns(scale=pl.col("v") * pl.col("horizon").cast(pl.Float64).sqrt())
        .with_columns(
            score=pl.max_horizontal((pl.col("q10") / pl.col("y")).log(),
                                    (pl.col("y") / pl.col("q90")).log()) / pl.col("scale"))
        .filter(pl.col("score").is_finite() & (pl.col("scale") > 0)
                & (pl.col("base_date") < pl.col("target")))
    )
    return g.select("horizon", "base_date", "target", "score", "scale")


def days_since_epoch(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Int32).to_numpy()


def ensemble(members: dict[str, pl.DataFrame], weights: pl.DataFrame,
             outcomes: pl.DataFrame, vol: pl.DataFrame, day: date) -> tuple:
    parts = []
    for name, m in sorted(members.items()):
        point = "median" if "median" in m.columns else "predicted_close"
        parts.append(m.filter(pl.col("base_date") == day).select(
            "code", "horizon", "target_date", "base_close",
            pl.col(point).alias("point"), "q10", "q90", "prob_up", "prob_flat", "prob_down",
            model=pl.lit(name)))
    rows = pl.concat(parts)
    price = lambda c: pl.col(c).is_finite() & (pl.col(c) > 0)  # noqa: E731
    probs = [pl.col(c) for c in ("prob_up", "prob_flat", "prob_down")]
    psum = pl.sum_horizontal(probs)
    good_band = price("q10") & price("q90") & (pl.col("q10") <= pl.col("q90"))
    rows = rows.filter(
        price("base_close") & price("point")
        & pl.all_horizontal([p.is_finite() & (p >= 0) for p in probs])
        & ((psum - 1).abs() <= 0.01)
        & (good_band | ~(pl.col("q10").is_nan() | pl.col("q90").is_nan()
                         | (pl.col("q10") < 0) | (pl.col("q90") < 0)))
    ).with_columns(
        q10=pl.when(good_band).then("q10").otherwise(pl.col("point") * 0.97),
        q90=pl.when(good_band).then("q90").otherwise(pl.col("point") * 1.03),
        interval_source=pl.when(good_band).then(pl.lit("model")).otherwise(pl.lit("fallback")),
        **{c: pl.col(c) / psum for c in ("prob_up", "prob_flat", "prob_down")},
    )
    book = weight_book(weights, day - timedelta(days=1))
    rows = rows.join(book.rename({"weight": "learned"}), on=["code", "horizon", "model"],
                     how="left")
    prior = pl.col("model").replace_strict(PRIORS, default=0.0, return_dtype=pl.Float64)
    key = ["code", "horizon"]
    raw = pl.coalesce("learned", prior)
    total = raw.sum().over(key)
    rows = rows.with_columns(
        weight=pl.when(total > 0).then(raw / total).otherwise(1.0 / pl.len().over(key)),
        weight_source=pl.when(pl.col("learned").is_not_null()).then(pl.lit("learned"))
        .otherwise(pl.lit("prior")),
    )
    skills = spearman_skills(outcomes, day)
    rows = rows.join(skills, on=["model", "horizon"], how="left").with_columns(
        _ws=pl.col("weight") * pl.col("skill").clip(lower_bound=0))
    w = pl.col("weight")
    pred = (
        rows.sort("code", "horizon", "model")
        .group_by(key, maintain_order=True)
        .agg(
            target_date=pl.col("target_date").first(),
            base_close=pl.col("base_close").first(),
            _blend=(w * pl.col("point")).sum(),
            _tilt=(pl.col("_ws") * pl.col("point")).sum() / pl.col("_ws").sum(),
            _tilt_ok=pl.col("skill").is_not_null().all() & (pl.col("_ws").sum() > 0)
            & (pl.len() > 1),
            q10=(w * pl.col("q10")).sum(),
            q90=(w * pl.col("q90")).sum(),
            _up=(w * pl.col("prob_up")).sum(),
            _flat=(w * pl.col("prob_flat")).sum(),
            _down=(w * pl.col("prob_down")).sum(),
            sources_used=pl.col("model").str.join(","),
            n_members=pl.len().cast(pl.Int32),
        )
        .with_columns(point=pl.when("_tilt_ok").then("_tilt").otherwise("_blend"))
    )
    p = pl.col("_up") + pl.col("_flat") + pl.col("_down")
    pred = pred.with_columns(prob_up=pl.col("_up") / p, prob_flat=pl.col("_flat") / p,
                             prob_down=pl.col("_down") / p)
    # Calibrate the band per horizon.
    ds = (day - date(1970, 1, 1)).days
    scores = matured_scores(outcomes, vol, day)
    vol_today = vol.filter(pl.col("date") == day).select("code", pl.col("vol_20d").alias("_v"))
    pred = pred.join(vol_today, on="code", how="left").with_columns(
        _scale=pl.col("_v") * pl.col("horizon").cast(pl.Float64).sqrt())
    by_h = {}
    for h in HORIZONS:
        s = scores.filter(pl.col("horizon") == h).sort("target")
        by_h[h] = (days_since_epoch(s.get_column("base_date")),
                   days_since_epoch(s.get_column("target")),
                   s.get_column("score").to_numpy(), s.get_column("scale").to_numpy())
    qcol = common.band_quantiles(pred.get_column("horizon").to_numpy(),
                                 pred.get_column("_scale").to_numpy(), by_h, ds)
    pred = pred.with_columns(_q=pl.Series(qcol).fill_nan(None))
    cal = pl.col("_q").is_not_null()
    pred = pred.with_columns(
        q10=pl.when(cal).then(pl.min_horizontal(
            pl.col("q10") * (-pl.col("_q") * pl.col("_scale")).exp(), pl.col("point")))
        .otherwise("q10"),
        q90=pl.when(cal).then(pl.max_horizontal(
            pl.col("q90") * (pl.col("_q") * pl.col("_scale")).exp(), pl.col("point")))
        .otherwise("q90"),
    )
    up, fl, dn = pl.col("prob_up"), pl.col("prob_flat"), pl.col("prob_down")
    pred = pred.with_columns(
        base_date=pl.lit(day),
        direction=pl.when((fl >= dn) & (fl >= up)).then(pl.lit("flat"))
        .when(dn >= up).then(pl.lit("down")).otherwise(pl.lit("up")),
        expected_return=pl.col("point") / pl.col("base_close") - 1,
        user_triggered=pl.lit(False),
    ).select("code", "base_date", "horizon", "target_date", "base_close", "point", "q10",
             "q90", "prob_up", "prob_flat", "prob_down", "direction", "expected_return",
             "sources_used", "n_members", "user_triggered")
    parts = rows.select("code", "horizon", "target_date", "base_close", "model", "point",
                        "q10", "q90", "prob_up", "prob_flat", "prob_down", "weight",
                        "weight_source", "interval_source").with_columns(base_date=pl.lit(day))
    return pred.sort("code", "horizon"), parts


# --- 6. outcomes ---------------------------------------------------------------------------


def direction_of(ret: pl.Expr) -> pl.Expr:
    return (pl.when(ret > FLAT_BAND + EDGE_TOL).then(pl.lit("up"))
            .when(ret < -FLAT_BAND - EDGE_TOL).then(pl.lit("down")).otherwise(pl.lit("flat")))


def match(preds: pl.DataFrame, members: pl.DataFrame, bars: pl.DataFrame, frm: date, day: date):
    ens = preds.filter(pl.col("target_date").is_between(frm, day)).select(
        "code", "base_date", "horizon", "target_date", "base_close", "point", "q10", "q90",
        "direction", "user_triggered", model=pl.lit("ensemble"), weight=pl.lit(None, pl.Float64))
    up, fl, dn = pl.col("prob_up"), pl.col("prob_flat"), pl.col("prob_down")
    mem = members.join(ens.select("code", "base_date", "horizon", "target_date",
                                  "user_triggered"),
                       on=["code", "base_date", "horizon", "target_date"]).select(
        "code", "base_date", "horizon", "target_date", "base_close", "point", "q10", "q90",
        direction=pl.when((fl >= dn) & (fl >= up)).then(pl.lit("flat"))
        .when(dn >= up).then(pl.lit("down")).otherwise(pl.lit("up")),
        user_triggered="user_triggered", model="model", weight="weight")
    closes = bars.filter((pl.col("date") >= frm) & (pl.col("close") > 0)).select(
        "code", pl.col("date").alias("target_date"), pl.col("close").alias("actual_close"))
    o = pl.concat([ens, mem]).join(closes, on=["code", "target_date"])
    b, y = pl.col("base_close"), pl.col("actual_close")

    def pinball(q: pl.Expr, tau: float) -> pl.Expr:
        d = y / b - q / b
        return pl.max_horizontal(tau * d, (tau - 1) * d)

    ret = y / b - 1
    return o.with_columns(
        actual_return=ret,
        actual_direction=direction_of(ret),
        abs_error=(pl.col("point") - y).abs(),
    ).with_columns(
        direction_hit=pl.col("direction") == pl.col("actual_direction"),
        abs_pct_error=pl.col("abs_error") / y,
        inside_interval=(pl.col("q10") <= y) & (y <= pl.col("q90")),
        pinball_q10=pinball(pl.col("q10"), 0.1),
        pinball_q50=pinball(pl.col("point"), 0.5),
        pinball_q90=pinball(pl.col("q90"), 0.9),
    )


# --- 7. weights ----------------------------------------------------------------------------


def update_weights(outcomes: pl.DataFrame, previous: pl.DataFrame, day: date) -> pl.DataFrame:
    key = ["code", "horizon"]
    rec = (
        outcomes.filter((pl.col("target_date") <= day) & (pl.col("model") != "ensemble"))
        .sort("target_date", descending=True)
        .group_by("code", "horizon", "model")
        .agg(pl.col("direction_hit").head(60).cast(pl.Float64).alias("_h"))
        .select(*key, "model", n=pl.col("_h").list.len(), hit_rate=pl.col("_h").list.mean())
    )
    prior = pl.col("model").replace_strict(PRIORS, default=0.0, return_dtype=pl.Float64)
    psum = prior.sum().over(key)
    skill = pl.col("hit_rate").fill_nan(0.0).clip(lower_bound=0)
    ssum = pl.col("_s").sum().over(key)
    k = 20.0
    w = (
        rec.with_columns(_s=skill, prior=pl.when(psum > 0).then(prior / psum)
                         .otherwise(1.0 / pl.len().over(key)))
        .with_columns(empirical=pl.when(ssum > 0).then(pl.col("_s") / ssum)
                      .otherwise(pl.col("prior")))
        .with_columns(weight=(pl.col("n") * pl.col("empirical") + k * pl.col("prior"))
                      / (pl.col("n") + k), _fixed=pl.lit(False), _m=pl.len().over(key))
    )
    lo, hi = 0.05, 0.95
    for _ in range(4):  # at most members + 1 rounds (three members)
        fixed_mass = pl.when("_fixed").then("weight").otherwise(0.0).sum().over(key)
        free_sum = pl.when("_fixed").then(0.0).otherwise("weight").sum().over(key)
        free_n = (~pl.col("_fixed")).sum().over(key)
        w = w.with_columns(weight=pl.when(pl.col("_fixed")).then("weight")
                           .when(free_sum > 0).then(pl.col("weight") / free_sum
                                                    * (1 - fixed_mass))
                           .otherwise((1 - fixed_mass) / free_n))
        out = ~pl.col("_fixed") & ((pl.col("weight") < lo) | (pl.col("weight") > hi))
        w = w.with_columns(weight=pl.when(out).then(pl.col("weight").clip(lo, hi))
                           .otherwise("weight"), _fixed=pl.col("_fixed") | out)
    w = w.with_columns(weight=pl.when(pl.col("_m") == 1).then(1.0).otherwise("weight"))
    prev = weight_book(previous, day - timedelta(days=1)).rename({"weight": "previous_weight"})
    return w.join(prev, on=["code", "horizon", "model"], how="left").select(
        *key, "model", as_of=pl.lit(day), weight="weight", prior="prior",
        empirical="empirical", prev_weight="previous_weight", sample_count="n",
        hit_rate="hit_rate").sort("code", "horizon", "model")


# --- the day -------------------------------------------------------------------------------


def run_day(lake: str, day: date, panel: str, index_csv: str, out: str, jobs: int):
    lap = common.Laps()
    bars_today, index, rejects, panel_days = ingest(panel, index_csv, day)
    cal = Calendar([d for d in panel_days if d <= day])
    hist = read(lake, "ohlcv_daily", day - timedelta(days=400),
                columns=bars_today.columns).filter(pl.col("date") < day)
    hist = pl.concat([hist, bars_today])
    lap("ingest")
    try:
        sent = read(lake, "sentiment_daily", day - timedelta(days=10)).filter(
            pl.col("date") <= day)
    except Exception:  # no news scored yet: no sentiment features (as krxflow)
        sent = None
    feats = features(hist, index, sent, day)
    lap("features")
    lg = lgbm_predict(lake, feats, bars_today, day, cal)
    lap("lgbm")
    ets = ets_forecast(hist, day, cal, jobs)
    lap("ets")
    since = day - timedelta(days=400)
    outcomes = read(lake, "prediction_outcomes", since, "target_date", common.OUTCOME_COLUMNS)
    weights = read(lake, "ensemble_weights", day - timedelta(days=100), "as_of")
    vol = read(lake, "features_daily", since, columns=["code", "date", "vol_20d"])
    vol = pl.concat([vol.filter(pl.col("date") < day), feats.select("code", "date", "vol_20d")])
    vol = vol.filter(pl.col("vol_20d").is_finite() & (pl.col("vol_20d") > 0))
    members = {"ets": ets} | ({"lgbm": lg} if lg is not None else {})
    preds, parts = ensemble(members, weights, outcomes, vol, day)
    lap("ensemble")
    frm = cal.add(day, -9)
    old = read(lake, "predictions", frm - timedelta(days=15), "base_date")
    old_m = read(lake, "prediction_members", frm - timedelta(days=15), "base_date")
    matched = match(old, old_m, hist.filter(pl.col("date") >= frm), frm, day)
    lap("match")
    key = ["code", "base_date", "horizon", "model"]
    # The record the weights learn from: the last 80 trading days of outcomes (krxflow's read).
    recent = outcomes.filter(pl.col("target_date") >= cal.add(day, -80))
    record = pl.concat([
        recent.select(*key, "target_date", "direction_hit").join(
            matched.select(key), on=key, how="anti"),
        matched.select(*key, "target_date", "direction_hit"),
    ])
    new_w = update_weights(record, weights, day)
    lap("weights")
    frames = {"bars": bars_today, "rejects": rejects, "features": feats, "lgbm": lg,
              "ets": ets, "predictions": preds, "members": parts, "outcomes": matched,
              "weights": new_w, "cal": cal, "vol": vol, "outcome_history": outcomes,
              "weight_history": weights}
    common.write_tables(out, frames, lambda f, p: f.write_parquet(p))
    lap("write")
    return lap.times, frames


def to_check(frames: dict, day: date) -> tuple[dict, common.Recompute]:
    def recompute(members: dict) -> tuple:
        return ensemble(members, frames["weight_history"], frames["outcome_history"],
                        frames["vol"], day)

    return frames, recompute


if __name__ == "__main__":
    common.main("polars", pl.thread_pool_size(), IMPORT_S, run_day, to_check)
