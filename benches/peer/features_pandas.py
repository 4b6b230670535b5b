"""krxflow's price features (docs/features.md) as a competent pandas user writes them: one
sort, then grouped shift / rolling / ewm over the whole frame, with no Python loop over codes
or rows. Wilder's RSI and ATR are an ewm (alpha = 1/14, adjust=False) seeded, like krxflow's,
with the 14-row simple mean."""

import numpy as np
import pandas as pd

name = "pandas"


def load(path: str) -> pd.DataFrame:
    bars = pd.read_parquet(path)
    bars["date"] = pd.to_datetime(bars["date"])
    return bars


def compute(bars: pd.DataFrame) -> pd.DataFrame:
    df = bars.sort_values(["code", "date"], ignore_index=True)
    c, h, l, o = df["close"], df["high"], df["low"], df["open"]
    v = df["volume"].astype("float64")
    g = df.groupby("code", sort=False)
    pos = g.cumcount()
    lag = {k: g["close"].shift(k) for k in (1, 3, 5, 10, 20)}
    prev = lag[1]
    d = c - prev
    pc = prev
    helpers = pd.DataFrame(
        {
            "code": df["code"],
            "close": c,
            "volume": v,
            "high": h,
            "low": l,
            "ret1": c / prev - 1,
            "gain": d.clip(lower=0),
            "loss": (-d).clip(lower=0),
            "tr": np.maximum(np.maximum(h - l, (h - pc).abs()), (l - pc).abs()),
            "turnover": c * v,
        }
    )
    gh = helpers.groupby("code", sort=False)

    def rolling(col: str, n: int):
        return gh[col].rolling(n)

    def flat(s: pd.Series) -> pd.Series:
        return s.reset_index(level=0, drop=True)

    def ewm(values: pd.Series, **kw) -> pd.Series:
        return flat(values.groupby(df["code"], sort=False).ewm(adjust=False, **kw).mean())

    def wilder(col: str) -> pd.Series:
        # The seed (the simple mean of rows 1..14) at row 14, the recursion after it.
        seed = flat(rolling(col, 14).mean())
        seeded = helpers[col].where(pos > 14, seed.where(pos == 14))
        return ewm(seeded, alpha=1 / 14)

    out = {"code": df["code"], "date": df["date"]}
    for k in (1, 3, 5, 10, 20):
        out[f"ret_{k}d"] = c / lag[k] - 1
    for k in (1, 5, 20):
        out[f"logret_{k}d"] = np.log(c / lag[k])
    ma20 = flat(rolling("close", 20).mean())
    for n in (5, 20, 60):
        ma = ma20 if n == 20 else flat(rolling("close", n).mean())
        out[f"ma{n}_ratio"] = c / ma - 1
    avg_gain, avg_loss = wilder("gain"), wilder("loss")
    out["rsi14"] = (100 - 100 / (1 + avg_gain / avg_loss)).where(avg_loss != 0, 100.0).where(
        avg_loss.notna()
    )
    line = ewm(c, span=12) - ewm(c, span=26)
    macd = line.where(pos >= 25)
    signal = ewm(macd, span=9).where(pos >= 33)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd, signal, macd - signal
    sd20 = flat(rolling("close", 20).std())
    out["bb_pctb"] = (c - (ma20 - 2 * sd20)) / (4 * sd20)
    out["atr14_norm"] = wilder("tr") / c
    out["vol_20d"] = flat(rolling("ret1", 20).std())
    vm, vs = flat(rolling("volume", 20).mean()), flat(rolling("volume", 20).std())
    out["volume_z20"] = (v - vm) / vs.where(vs != 0)
    prev_turnover = gh["turnover"].shift(1)
    out["turnover_chg"] = helpers["turnover"] / prev_turnover.where(prev_turnover != 0) - 1
    out["hl_range"] = (h - l) / c
    out["gap_open"] = o / prev - 1
    out["close_loc"] = (c - l) / (h - l).where(h > l)
    out["dist_52w_high"] = c / flat(rolling("high", 250).max()) - 1
    out["dist_52w_low"] = c / flat(rolling("low", 250).min()) - 1
    out["dow"] = ((df["date"].dt.dayofweek + 1) % 7).astype("float64")
    return pd.DataFrame(out)


def save(frame: pd.DataFrame, path: str) -> None:
    frame.assign(date=frame["date"].dt.date).to_parquet(path, index=False)


def rows(frame: pd.DataFrame) -> int:
    return len(frame)


def threads() -> int:
    return 1
