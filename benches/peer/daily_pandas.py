"""krxflow's full-market daily batch as a pandas user writes it (issue 18's end-to-end peer).

The same day, steps, inputs and outputs as daily_polars.py (its docstring lists them), written
the way a competent pandas user writes them: one sort, grouped shift / rolling / ewm /
transform, merges and boolean masks, NumPy where a column is computed, and no Python loop over
codes or rows. The lake is read with `deltalake` into pandas (the peer never writes there), the
price features are features_pandas.py's, LightGBM is the `lightgbm` package on the registered
model files, ETS is statsforecast's AutoETS (whose own API takes a pandas frame) on all cores.
pandas itself runs on one thread.

    python daily_pandas.py LAKE DAY PANEL INDEX_CSV OUT RUNS [CHECK_LAKE]

Prints one JSON line: each run's wall time and step times (seconds), the row counts, and with
CHECK_LAKE (the lake after krxflow ran D) the agreement of each step with krxflow's tables
(daily_common.check, in Polars, not timed), including the peer's ensemble recomputed on
krxflow's own member forecasts.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta

_t0 = time.perf_counter()
import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from deltalake import DeltaTable  # noqa: E402
from statsforecast import StatsForecast  # noqa: E402
from statsforecast.models import AutoETS  # noqa: E402

import daily_common as common  # noqa: E402
import features_pandas  # noqa: E402
from daily_common import (  # noqa: E402
    CONTEXT, EDGE_TOL, FEATURES, FLAT_BAND, HISTORY, HORIZONS, MIN_CONTEXT, PRIORS, Calendar,
    derive,
)

IMPORT_S = time.perf_counter() - _t0

PROBS = ["prob_up", "prob_flat", "prob_down"]


def read(lake: str, table: str, since: date | None = None, col: str = "date",
         columns: list[str] | None = None) -> pd.DataFrame:
    filters = None if since is None else [(col, ">=", since)]
    t = DeltaTable(os.path.join(lake, table)).to_pyarrow_table(columns=columns, filters=filters)
    return t.to_pandas(date_as_object=False, coerce_temporal_nanoseconds=True)


def direction(up: pd.Series, flat: pd.Series, down: pd.Series) -> np.ndarray:
    """The most likely of up/flat/down, ties to flat, then down."""
    return np.select([(flat >= down) & (flat >= up), down >= up], ["flat", "down"], "up")


# --- 1. ingest -----------------------------------------------------------------------------


def ingest(panel: str, index_csv: str, day: pd.Timestamp):
    raw = pd.read_csv(panel, dtype={"code": str}, parse_dates=["date"])
    calendar_days = pd.DatetimeIndex(raw["date"].unique()).date.tolist()
    today = raw[raw["date"] == day]
    o, h, l, c, v = (today[x] for x in ("open", "high", "low", "close", "volume"))
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    finite = np.isfinite(today[["open", "high", "low", "close", "volume"]].to_numpy(
        np.float64)).all(axis=1)
    ok = (
        finite & (v > 0) & (v == np.floor(v))
        & (o > 0) & (h > 0) & (l > 0) & (c > 0)
        & (h + np.maximum(2.0, top * 0.001) >= top)
        & (l - np.maximum(2.0, bottom * 0.001) <= bottom) & (h >= l)
    )
    # Highs and lows off by rounding are repaired; a code's second row for a day is rejected.
    kept = today[ok].drop_duplicates(["code", "date"], keep="first")
    o, c = kept["open"], kept["close"]
    bars = pd.DataFrame({
        "code": kept["code"], "date": kept["date"], "open": o,
        "high": np.maximum(kept["high"], np.maximum(o, c)),
        "low": np.minimum(kept["low"], np.minimum(o, c)),
        "close": c, "volume": kept["volume"].astype("int64"),
    }).reset_index(drop=True)
    idx = pd.read_csv(index_csv, na_values=["null"], parse_dates=["Date"])
    index = pd.DataFrame({"date": idx["Date"], "close": idx["Close"]})
    return bars, index[index["date"] <= day], len(today) - len(bars), calendar_days


# --- 2. features ---------------------------------------------------------------------------


def features(history: pd.DataFrame, index: pd.DataFrame, sent: pd.DataFrame | None,
             day: pd.Timestamp) -> pd.DataFrame:
    core = features_pandas.compute(history)  # sorted by (code, date), a fresh index
    mi = index.sort_values("date").dropna(subset=["close"])
    mc = mi["close"]
    mkt = pd.DataFrame({"date": mi["date"], "mkt_ret_1d": mc / mc.shift(1) - 1,
                        "mkt_ret_5d": mc / mc.shift(5) - 1, "_mkt20": mc / mc.shift(20) - 1})
    f = core.merge(mkt, on="date", how="left")  # a left merge keeps core's order
    if sent is not None:
        s = sent[["code", "date", "n_articles", "mean_score", "weighted_score", "pos_ratio",
                  "neg_ratio"]].rename(columns={
                      "n_articles": "sent_n_articles", "mean_score": "sent_mean",
                      "weighted_score": "sent_weighted", "pos_ratio": "sent_pos_ratio",
                      "neg_ratio": "sent_neg_ratio"})
        f = f.merge(s, on=["code", "date"], how="left")
        f["sent_n_articles"] = f["sent_n_articles"].astype("float64").fillna(0.0)
        w0 = f["sent_weighted"].fillna(0.0)
        gw = w0.groupby(f["code"], sort=False)
        f["sent_decay3"] = (w0 + 0.5 * gw.shift(1).fillna(0.0)
                            + 0.25 * gw.shift(2).fillna(0.0))
    else:  # no news scored yet: no sentiment features (as krxflow)
        for c in ("sent_n_articles", "sent_mean", "sent_weighted", "sent_pos_ratio",
                  "sent_neg_ratio", "sent_decay3"):
            f[c] = np.nan
    # beta over 60 returns: the covariance from rolling sums, the market's rolling variance.
    n = 60
    r, m = f["ret_1d"], f["mkt_ret_1d"]
    parts = pd.DataFrame({"r": r, "m": m, "rm": r * m,
                          "both": (r.notna() & m.notna()).astype("float64")})
    sums = parts.groupby(f["code"], sort=False).rolling(n).sum().reset_index(level=0, drop=True)
    cov = (sums["rm"] - sums["r"] * sums["m"] / n) / (n - 1)
    var = m.groupby(f["code"], sort=False).rolling(n).var().reset_index(level=0, drop=True)
    pos = f.groupby("code", sort=False).cumcount()
    f["beta_60d"] = (cov / var).where((pos >= n) & (sums["both"] == n) & (var != 0))
    f["rel_strength_20d"] = f["ret_20d"] - f["_mkt20"]
    out = f.loc[f["date"] == day, ["code", "date", *FEATURES]].reset_index(drop=True)
    # pandas has one missing value, NaN; krxflow (like Polars) tells a missing value (null: not
    # enough history) from an undefined one (NaN), and only the first makes a row warm-up.
    # bb_pctb is the one core feature that is NaN with its history complete (0/0 over twenty
    # equal closes): its history is ma20_ratio's, which the mask checks.
    out["warmup"] = out[[c for c in HISTORY if c != "bb_pctb"]].isna().any(axis=1)
    return out


# --- 3. LightGBM ---------------------------------------------------------------------------


def lgbm_predict(lake: str, feats: pd.DataFrame, bars: pd.DataFrame, day: pd.Timestamp,
                 cal: Calendar) -> pd.DataFrame | None:
    reg = read(lake, "model_registry")
    reg = reg[(reg["kind"] == "lgbm") & reg["model"].str.startswith("lgbm/pooled/")
              & (reg["trained_through"] < day)]
    rows = feats[~feats["warmup"]].merge(bars[["code", "close"]], on="code")
    x = rows[FEATURES].to_numpy(np.float64)
    close = rows["close"].to_numpy()
    out = []
    for h in HORIZONS:
        cand = reg[reg["model"] == f"lgbm/pooled/_all/h{h}"].sort_values(
            ["trained_through", "trained_at"])
        if cand.empty or rows.empty:
            continue
        base = os.path.join(lake, cand["path"].iloc[-1])
        with open(os.path.join(base, "metrics.json")) as fh:
            card = json.load(fh)
        ret = lgb.Booster(model_file=os.path.join(base, "regression.txt")).predict(
            x, num_threads=1)
        probs = lgb.Booster(model_file=os.path.join(base, "direction.txt")).predict(
            x, num_threads=1)
        ret = common.lgbm_returns(card, ret)
        lo = card["regression"].get("residual_q10") or 0.0
        hi = card["regression"].get("residual_q90") or 0.0
        out.append(pd.DataFrame({
            "code": rows["code"].to_numpy(), "horizon": np.int32(h),
            "target_date": pd.Timestamp(cal.add(day.date(), h)), "base_close": close,
            "predicted_return": ret, "predicted_close": close * (1 + ret),
            "q10": close * (1 + ret + lo), "q90": close * (1 + ret + hi),
            "prob_up": probs[:, 2], "prob_flat": probs[:, 1], "prob_down": probs[:, 0],
            "model_version": card["version"],
        }))
    if not out:
        return None
    lg = pd.concat(out, ignore_index=True).assign(base_date=day)
    return lg.sort_values(["code", "horizon"], ignore_index=True)


# --- 4. ETS --------------------------------------------------------------------------------


def ets_forecast(history: pd.DataFrame, day: pd.Timestamp, cal: Calendar,
                 jobs: int) -> pd.DataFrame:
    last = history.groupby("code")["date"].transform("max")
    s = history[(last == day) & (history["close"] > 0)].sort_values(["code", "date"])
    s = s.groupby("code", sort=False).tail(CONTEXT)
    s = s[s.groupby("code", sort=False)["close"].transform("size") >= MIN_CONTEXT]
    df = pd.DataFrame({"unique_id": s["code"], "ds": s.groupby("code", sort=False).cumcount() + 1,
                       "y": np.log(s["close"])})
    sf = StatsForecast(models=[AutoETS(season_length=1, model="AZN")], freq=1, n_jobs=jobs)
    fc = sf.forecast(df=df, h=max(HORIZONS), level=[20, 40, 60, 80])
    fc["step"] = fc.groupby("unique_id", sort=False).cumcount() + 1
    fc = fc[fc["step"].isin(HORIZONS)]
    closes = s.groupby("code", sort=False)["close"].last().rename("base_close")
    fc = fc.merge(closes, left_on="unique_id", right_index=True)
    cols = ["AutoETS-lo-80", "AutoETS-lo-60", "AutoETS-lo-40", "AutoETS-lo-20", "AutoETS",
            "AutoETS-hi-20", "AutoETS-hi-40", "AutoETS-hi-60", "AutoETS-hi-80"]
    q = np.exp(fc[cols].to_numpy())
    d = derive(q, fc["base_close"].to_numpy())
    targets = {h: pd.Timestamp(cal.add(day.date(), h)) for h in HORIZONS}
    out = pd.DataFrame({
        "code": fc["unique_id"].to_numpy(), "base_date": day,
        "horizon": fc["step"].to_numpy().astype(np.int32),
        "target_date": fc["step"].map(targets).to_numpy(),
        "base_close": fc["base_close"].to_numpy(), "q10": q[:, 0], "q90": q[:, 8], **d,
    })
    return out.sort_values(["code", "horizon"], ignore_index=True)


# --- 5. ensemble ---------------------------------------------------------------------------


def weight_book(weights: pd.DataFrame, through: pd.Timestamp) -> pd.DataFrame:
    """The latest valid set per (code, horizon) dated on or before `through`: (code, horizon,
    model, weight)."""
    w = weights[weights["as_of"] <= through].drop_duplicates(
        ["code", "horizon", "as_of", "model"], keep="last")
    ok = np.isfinite(w["weight"]) & (w["weight"] >= 0)
    sets = (w.assign(_ok=ok).groupby(["code", "horizon", "as_of"], sort=False)
            .agg(ok=("_ok", "all"), total=("weight", "sum")).reset_index())
    sets = sets[sets["ok"] & ((sets["total"] - 1).abs() <= 1e-6)]
    newest = sets.groupby(["code", "horizon"], as_index=False)["as_of"].max()
    return w.merge(newest, on=["code", "horizon", "as_of"])[
        ["code", "horizon", "model", "weight"]]


def spearman_skills(outcomes: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """(model, horizon, skill): the mean of the latest 60 daily Spearman ICs (>= 5 codes a
    date, >= 20 dates), matured before `day`."""
    o = outcomes[
        (outcomes["model"] != "ensemble") & (outcomes["target_date"] < day)
        & (outcomes["base_date"] < outcomes["target_date"])
        & (outcomes["base_close"] > 0) & (outcomes["point"] > 0) & (outcomes["actual_close"] > 0)
    ]
    g = ["model", "horizon", "base_date"]
    d = o[g].copy()
    grouped = (o["point"] / o["base_close"] - 1).groupby([o[k] for k in g], sort=False)
    d["rp"] = grouped.rank(method="average")
    d["ry"] = (o["actual_close"] / o["base_close"] - 1).groupby(
        [o[k] for k in g], sort=False).rank(method="average")
    d["rpy"], d["rp2"], d["ry2"] = d["rp"] * d["ry"], d["rp"] ** 2, d["ry"] ** 2
    s = d.groupby(g, sort=False).agg(n=("rp", "size"), sp=("rp", "sum"), sy=("ry", "sum"),
                                     spy=("rpy", "sum"), sp2=("rp2", "sum"),
                                     sy2=("ry2", "sum")).reset_index()
    cov = s["spy"] - s["sp"] * s["sy"] / s["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        s["ic"] = cov / np.sqrt((s["sp2"] - s["sp"] ** 2 / s["n"])
                                * (s["sy2"] - s["sy"] ** 2 / s["n"]))
    s = s[(s["n"] >= 5) & np.isfinite(s["ic"])]
    latest = s.sort_values("base_date", ascending=False).groupby(
        ["model", "horizon"], sort=False).head(60)
    skills = latest.groupby(["model", "horizon"], as_index=False).agg(
        n=("ic", "size"), skill=("ic", "mean"))
    return skills.loc[skills["n"] >= 20, ["model", "horizon", "skill"]]


def matured_scores(outcomes: pd.DataFrame, vol: pd.DataFrame, day: pd.Timestamp):
    """Per horizon, the ensemble's matured raw bands rebuilt from the member rows at their
    weights, scored: (horizon, base_date, target, score, scale)."""
    w = outcomes["weight"]
    m = outcomes.loc[
        (outcomes["model"] != "ensemble") & (outcomes["target_date"] < day)
        & np.isfinite(w) & (w > 0)
        & (outcomes["q10"] > 0) & (outcomes["q90"] > 0) & (outcomes["actual_close"] > 0),
        ["code", "base_date", "horizon", "target_date", "actual_close", "weight"],
    ].assign(wq10=w * outcomes["q10"], wq90=w * outcomes["q90"])
    m = m.merge(vol.rename(columns={"date": "base_date"}), on=["code", "base_date"])
    g = m.groupby(["code", "base_date", "horizon"], sort=False).agg(
        target=("target_date", "first"), y=("actual_close", "first"), v=("vol_20d", "first"),
        w=("weight", "sum"), wq10=("wq10", "sum"), wq90=("wq90", "sum")).reset_index()
    scale = g["v"] * np.sqrt(g["horizon"].astype("float64"))
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.maximum(np.log(g["wq10"] / g["w"] / g["y"]),
                           np.log(g["y"] / (g["wq90"] / g["w"]))) / scale
    g = g.assign(score=score, scale=scale)
    return g[np.isfinite(g["score"]) & (g["scale"] > 0) & (g["base_date"] < g["target"])]


def days_since_epoch(s: pd.Series) -> np.ndarray:
    return s.to_numpy().astype("datetime64[D]").astype(np.int64)


def ensemble(members: dict[str, pd.DataFrame], weights: pd.DataFrame, outcomes: pd.DataFrame,
             vol: pd.DataFrame, day: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = []
    for name, m in sorted(members.items()):
        point = "median" if "median" in m.columns else "predicted_close"
        m = m[m["base_date"] == day]
        parts.append(pd.DataFrame({
            "code": m["code"], "horizon": m["horizon"], "target_date": m["target_date"],
            "base_close": m["base_close"], "point": m[point], "q10": m["q10"], "q90": m["q90"],
            **{p: m[p] for p in PROBS}, "model": name}))
    rows = pd.concat(parts, ignore_index=True)

    def price(c: str) -> pd.Series:
        return np.isfinite(rows[c]) & (rows[c] > 0)

    probs = rows[PROBS]
    psum = probs.sum(axis=1)
    good_band = price("q10") & price("q90") & (rows["q10"] <= rows["q90"])
    unusable = (rows["q10"].isna() | rows["q90"].isna() | (rows["q10"] < 0)
                | (rows["q90"] < 0))
    keep = (price("base_close") & price("point") & np.isfinite(probs).all(axis=1)
            & (probs >= 0).all(axis=1) & ((psum - 1).abs() <= 0.01) & (good_band | ~unusable))
    rows, good_band, psum = rows[keep].copy(), good_band[keep], psum[keep]
    rows["q10"] = rows["q10"].where(good_band, rows["point"] * 0.97)
    rows["q90"] = rows["q90"].where(good_band, rows["point"] * 1.03)
    rows["interval_source"] = np.where(good_band, "model", "fallback")
    rows[PROBS] = rows[PROBS].div(psum, axis=0)
    book = weight_book(weights, day - pd.Timedelta(days=1)).rename(columns={"weight": "learned"})
    rows = rows.merge(book, on=["code", "horizon", "model"], how="left")
    key = [rows["code"], rows["horizon"]]
    raw = rows["learned"].fillna(rows["model"].map(PRIORS).fillna(0.0))
    total = raw.groupby(key).transform("sum")
    count = raw.groupby(key).transform("size")
    rows["weight"] = np.where(total > 0, raw / total, 1.0 / count)
    rows["weight_source"] = np.where(rows["learned"].notna(), "learned", "prior")
    rows = rows.merge(spearman_skills(outcomes, day), on=["model", "horizon"], how="left")
    rows = rows.sort_values(["code", "horizon", "model"], ignore_index=True)
    w = rows["weight"]
    ws = w * rows["skill"].clip(lower=0)
    agg = rows[["code", "horizon", "target_date", "base_close"]].assign(
        _wp=w * rows["point"], _wsp=ws * rows["point"], _ws=ws, _skill=rows["skill"].notna(),
        q10=w * rows["q10"], q90=w * rows["q90"],
        **{p: w * rows[p] for p in PROBS})
    g = agg.groupby(["code", "horizon"], sort=False)
    pred = g.agg(target_date=("target_date", "first"), base_close=("base_close", "first"),
                 _blend=("_wp", "sum"), _wsp=("_wsp", "sum"), _ws=("_ws", "sum"),
                 _skill=("_skill", "all"), n_members=("_wp", "size"), q10=("q10", "sum"),
                 q90=("q90", "sum"), prob_up=("prob_up", "sum"), prob_flat=("prob_flat", "sum"),
                 prob_down=("prob_down", "sum")).reset_index()
    pred["sources_used"] = rows.groupby(["code", "horizon"], sort=False)["model"].agg(
        ",".join).to_numpy()
    tilt = pred["_skill"] & (pred["_ws"] > 0) & (pred["n_members"] > 1)
    pred["point"] = np.where(tilt, pred["_wsp"] / pred["_ws"], pred["_blend"])
    pred[PROBS] = pred[PROBS].div(pred[PROBS].sum(axis=1), axis=0)
    # Calibrate the band per horizon.
    scores = matured_scores(outcomes, vol, day)
    by_h = {}
    for h in HORIZONS:
        s = scores[scores["horizon"] == h].sort_values("target")
        by_h[h] = (days_since_epoch(s["base_date"]), days_since_epoch(s["target"]),
                   s["score"].to_numpy(), s["scale"].to_numpy())
    v = pred["code"].map(vol.loc[vol["date"] == day].set_index("code")["vol_20d"])
    scale = (v * np.sqrt(pred["horizon"].astype("float64"))).to_numpy()
    ds = (day.date() - date(1970, 1, 1)).days
    q = common.band_quantiles(pred["horizon"].to_numpy(), scale, by_h, ds)
    calibrated = ~np.isnan(q)
    with np.errstate(invalid="ignore"):
        pred["q10"] = np.where(calibrated, np.minimum(pred["q10"] * np.exp(-q * scale),
                                                      pred["point"]), pred["q10"])
        pred["q90"] = np.where(calibrated, np.maximum(pred["q90"] * np.exp(q * scale),
                                                      pred["point"]), pred["q90"])
    pred["base_date"] = day
    pred["direction"] = direction(pred["prob_up"], pred["prob_flat"], pred["prob_down"])
    pred["expected_return"] = pred["point"] / pred["base_close"] - 1
    pred["user_triggered"] = False
    pred["n_members"] = pred["n_members"].astype(np.int32)
    pred = pred[["code", "base_date", "horizon", "target_date", "base_close", "point", "q10",
                 "q90", *PROBS, "direction", "expected_return", "sources_used", "n_members",
                 "user_triggered"]]
    members_out = rows[["code", "horizon", "target_date", "base_close", "model", "point", "q10",
                        "q90", *PROBS, "weight", "weight_source", "interval_source"]].assign(
        base_date=day)
    return pred, members_out


# --- 6. outcomes ---------------------------------------------------------------------------


def match(preds: pd.DataFrame, members: pd.DataFrame, bars: pd.DataFrame, frm: pd.Timestamp,
          day: pd.Timestamp) -> pd.DataFrame:
    keys = ["code", "base_date", "horizon", "target_date"]
    e = preds[(preds["target_date"] >= frm) & (preds["target_date"] <= day)]
    ens = e[[*keys, "base_close", "point", "q10", "q90", "direction", "user_triggered"]].assign(
        model="ensemble", weight=np.nan)
    m = members.merge(ens[[*keys, "user_triggered"]], on=keys)
    mem = m[[*keys, "base_close", "point", "q10", "q90"]].assign(
        direction=direction(m["prob_up"], m["prob_flat"], m["prob_down"]),
        user_triggered=m["user_triggered"], model=m["model"], weight=m["weight"])
    closes = bars.loc[(bars["date"] >= frm) & (bars["close"] > 0), ["code", "date", "close"]]
    closes = closes.rename(columns={"date": "target_date", "close": "actual_close"})
    o = pd.concat([ens, mem], ignore_index=True).merge(closes, on=["code", "target_date"])
    b, y = o["base_close"], o["actual_close"]
    ret = y / b - 1
    o["actual_return"] = ret
    o["actual_direction"] = np.select(
        [ret > FLAT_BAND + EDGE_TOL, ret < -FLAT_BAND - EDGE_TOL], ["up", "down"], "flat")
    o["abs_error"] = (o["point"] - y).abs()
    o["direction_hit"] = o["direction"] == o["actual_direction"]
    o["abs_pct_error"] = o["abs_error"] / y
    o["inside_interval"] = (o["q10"] <= y) & (y <= o["q90"])
    for name, q, tau in (("pinball_q10", o["q10"], 0.1), ("pinball_q50", o["point"], 0.5),
                         ("pinball_q90", o["q90"], 0.9)):
        d = y / b - q / b
        o[name] = np.maximum(tau * d, (tau - 1) * d)
    return o


# --- 7. weights ----------------------------------------------------------------------------


def update_weights(outcomes: pd.DataFrame, previous: pd.DataFrame,
                   day: pd.Timestamp) -> pd.DataFrame:
    o = outcomes[(outcomes["target_date"] <= day) & (outcomes["model"] != "ensemble")]
    o = o.sort_values("target_date", ascending=False)
    latest = o.groupby(["code", "horizon", "model"], sort=False).head(60)
    rec = latest.assign(_h=latest["direction_hit"].astype("float64")).groupby(
        ["code", "horizon", "model"], as_index=False).agg(n=("_h", "size"),
                                                          hit_rate=("_h", "mean"))
    key = [rec["code"], rec["horizon"]]
    prior = rec["model"].map(PRIORS).fillna(0.0)
    psum = prior.groupby(key).transform("sum")
    m = prior.groupby(key).transform("size")
    rec["prior"] = np.where(psum > 0, prior / psum, 1.0 / m)
    skill = rec["hit_rate"].fillna(0.0).clip(lower=0)
    ssum = skill.groupby(key).transform("sum")
    rec["empirical"] = np.where(ssum > 0, skill / ssum, rec["prior"])
    k, lo, hi = 20.0, 0.05, 0.95
    w = ((rec["n"] * rec["empirical"] + k * rec["prior"]) / (rec["n"] + k)).to_numpy()
    fixed = np.zeros(len(rec), bool)
    for _ in range(4):  # at most members + 1 rounds (three members)
        fixed_mass = pd.Series(np.where(fixed, w, 0.0)).groupby(key).transform("sum").to_numpy()
        free_sum = pd.Series(np.where(fixed, 0.0, w)).groupby(key).transform("sum").to_numpy()
        free_n = pd.Series(~fixed).groupby(key).transform("sum").to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(fixed, w, np.where(free_sum > 0, w / free_sum * (1 - fixed_mass),
                                            (1 - fixed_mass) / free_n))
        out = ~fixed & ((w < lo) | (w > hi))
        w = np.where(out, np.clip(w, lo, hi), w)
        fixed |= out
    rec["weight"] = np.where(m == 1, 1.0, w)
    prev = weight_book(previous, day - pd.Timedelta(days=1)).rename(
        columns={"weight": "prev_weight"})
    rec = rec.merge(prev, on=["code", "horizon", "model"], how="left")
    rec = rec.assign(as_of=day).rename(columns={"n": "sample_count"})
    return rec[["code", "horizon", "model", "as_of", "weight", "prior", "empirical",
                "prev_weight", "sample_count", "hit_rate"]].sort_values(
        ["code", "horizon", "model"], ignore_index=True)


# --- the day -------------------------------------------------------------------------------


def run_day(lake: str, day: date, panel: str, index_csv: str, out: str, jobs: int):
    lap = common.Laps()
    d = pd.Timestamp(day)
    bars_today, index, rejects, panel_days = ingest(panel, index_csv, d)
    cal = Calendar([x for x in panel_days if x <= day])
    hist = read(lake, "ohlcv_daily", day - timedelta(days=400),
                columns=list(bars_today.columns))
    hist = pd.concat([hist[hist["date"] < d], bars_today], ignore_index=True)
    lap("ingest")
    try:
        sent = read(lake, "sentiment_daily", day - timedelta(days=10))
        sent = sent[sent["date"] <= d]
    except Exception:  # no news scored yet: no sentiment features (as krxflow)
        sent = None
    feats = features(hist, index, sent, d)
    lap("features")
    lg = lgbm_predict(lake, feats, bars_today, d, cal)
    lap("lgbm")
    ets = ets_forecast(hist, d, cal, jobs)
    lap("ets")
    since = day - timedelta(days=400)
    outcomes = read(lake, "prediction_outcomes", since, "target_date", common.OUTCOME_COLUMNS)
    weights = read(lake, "ensemble_weights", day - timedelta(days=100), "as_of")
    vol = read(lake, "features_daily", since, columns=["code", "date", "vol_20d"])
    vol = pd.concat([vol[vol["date"] < d], feats[["code", "date", "vol_20d"]]],
                    ignore_index=True)
    vol = vol[np.isfinite(vol["vol_20d"]) & (vol["vol_20d"] > 0)]
    members = {"ets": ets} | ({"lgbm": lg} if lg is not None else {})
    preds, parts = ensemble(members, weights, outcomes, vol, d)
    lap("ensemble")
    frm = cal.add(day, -9)
    old = read(lake, "predictions", frm - timedelta(days=15), "base_date")
    old_m = read(lake, "prediction_members", frm - timedelta(days=15), "base_date")
    frm = pd.Timestamp(frm)
    matched = match(old, old_m, hist[hist["date"] >= frm], frm, d)
    lap("match")
    key = ["code", "base_date", "horizon", "model"]
    # The record the weights learn from: the last 80 trading days of outcomes (krxflow's read),
    # today's matches replacing the stored ones.
    recent = outcomes.loc[outcomes["target_date"] >= pd.Timestamp(cal.add(day, -80)),
                          [*key, "target_date", "direction_hit"]]
    fresh = recent.merge(matched[key].assign(_new=True), on=key, how="left")
    record = pd.concat([recent[fresh["_new"].isna().to_numpy()],
                        matched[[*key, "target_date", "direction_hit"]]], ignore_index=True)
    new_w = update_weights(record, weights, d)
    lap("weights")
    frames = {"bars": bars_today, "rejects": rejects, "features": feats, "lgbm": lg,
              "ets": ets, "predictions": preds, "members": parts, "outcomes": matched,
              "weights": new_w, "cal": cal, "vol": vol, "outcome_history": outcomes,
              "weight_history": weights}
    common.write_tables(out, frames, lambda f, p: f.to_parquet(p, index=False))
    lap("write")
    return lap.times, frames


# --- the check (not timed) -----------------------------------------------------------------


def to_check(frames: dict, day: date) -> tuple[dict, common.Recompute]:
    import polars as pl

    def to_pl(df: pd.DataFrame | None):
        if df is None:
            return None
        out = pl.from_pandas(df)
        dates = [c for c, t in out.schema.items() if isinstance(t, pl.Datetime)]
        return out.with_columns([pl.col(c).cast(pl.Date) for c in dates]
                                + [pl.col(c).cast(pl.Int32) for c in ("horizon",)
                                   if c in out.columns])

    def to_pd(df: pl.DataFrame) -> pd.DataFrame:
        out = df.to_pandas()
        for c, t in df.schema.items():
            if t == pl.Date:
                out[c] = out[c].astype("datetime64[ns]")
        return out

    def recompute(members: dict) -> tuple:
        preds, parts = ensemble({k: to_pd(v) for k, v in members.items()},
                                frames["weight_history"], frames["outcome_history"],
                                frames["vol"], pd.Timestamp(day))
        return to_pl(preds), to_pl(parts)

    names = ["features", "lgbm", "ets", "predictions", "members", "outcomes", "weights"]
    return {"cal": frames["cal"]} | {k: to_pl(frames[k]) for k in names}, recompute


if __name__ == "__main__":
    common.main("pandas", 1, IMPORT_S, run_day, to_check)
