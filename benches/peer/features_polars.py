"""krxflow's price features (docs/features.md) as a Polars user writes them: one lazy query of
grouped window expressions (`.over("code")`), run by Polars' multithreaded engine. Wilder's RSI
and ATR are an ewm_mean (alpha = 1/14, adjust=False) seeded, like krxflow's, with the 14-row
simple mean."""

import polars as pl

name = "polars"


def load(path: str) -> pl.DataFrame:
    return pl.read_parquet(path)


def compute(bars: pl.DataFrame) -> pl.DataFrame:
    c, h, l, o = pl.col("close"), pl.col("high"), pl.col("low"), pl.col("open")
    v = pl.col("volume").cast(pl.Float64)
    pos = pl.col("_pos")

    def by_code(e: pl.Expr) -> pl.Expr:
        return e.over("code")

    def lag(e: pl.Expr, k: int) -> pl.Expr:
        return by_code(e.shift(k))

    def ewm(e: pl.Expr, alpha: float) -> pl.Expr:
        return by_code(e.ewm_mean(alpha=alpha, adjust=False))

    def wilder(col: str) -> pl.Expr:
        x = pl.col(col)
        seed = by_code(x.rolling_mean(14))
        seeded = pl.when(pos > 14).then(x).when(pos == 14).then(seed)
        return ewm(seeded, 1 / 14)

    def rolling_mean_sd(e: pl.Expr, n: int) -> tuple[pl.Expr, pl.Expr]:
        return by_code(e.rolling_mean(n)), by_code(e.rolling_std(n))

    base = (
        bars.lazy()
        .sort("code", "date")
        .with_columns(
            _pos=by_code(pl.int_range(pl.len())),
            _prev=lag(c, 1),
            _v=v,
        )
        .with_columns(
            _d=c - pl.col("_prev"),
            _ret1=c / pl.col("_prev") - 1,
            _tr=pl.max_horizontal(
                h - l, (h - pl.col("_prev")).abs(), (l - pl.col("_prev")).abs()
            ),
            _turnover=c * pl.col("_v"),
        )
        .with_columns(
            _gain=pl.col("_d").clip(lower_bound=0),
            _loss=(-pl.col("_d")).clip(lower_bound=0),
        )
    )
    # max_horizontal skips nulls; the first row of a code has no true range.
    base = base.with_columns(_tr=pl.when(pl.col("_prev").is_not_null()).then(pl.col("_tr")))
    ma20, sd20 = rolling_mean_sd(c, 20)
    vm, vs = rolling_mean_sd(pl.col("_v"), 20)
    avg_gain, avg_loss = wilder("_gain"), wilder("_loss")
    line = ewm(c, 2 / 13) - ewm(c, 2 / 27)
    prev_turnover = lag(pl.col("_turnover"), 1)
    feats = base.with_columns(
        *[(c / lag(c, k) - 1).alias(f"ret_{k}d") for k in (1, 3, 5, 10, 20)],
        *[(c / lag(c, k)).log().alias(f"logret_{k}d") for k in (1, 5, 20)],
        *[(c / by_code(c.rolling_mean(n)) - 1).alias(f"ma{n}_ratio") for n in (5, 20, 60)],
        rsi14=pl.when(avg_loss == 0)
        .then(100.0)
        .otherwise(100 - 100 / (1 + avg_gain / avg_loss)),
        _macd=pl.when(pos >= 25).then(line),
        bb_pctb=(c - (ma20 - 2 * sd20)) / (4 * sd20),
        atr14_norm=wilder("_tr") / c,
        vol_20d=by_code(pl.col("_ret1").rolling_std(20)),
        volume_z20=(pl.col("_v") - vm) / pl.when(vs != 0).then(vs),
        turnover_chg=pl.col("_turnover") / pl.when(prev_turnover != 0).then(prev_turnover) - 1,
        hl_range=(h - l) / c,
        gap_open=o / pl.col("_prev") - 1,
        close_loc=pl.when(h > l).then((c - l) / (h - l)),
        dist_52w_high=c / by_code(h.rolling_max(250)) - 1,
        dist_52w_low=c / by_code(l.rolling_min(250)) - 1,
        dow=(pl.col("date").dt.weekday() % 7).cast(pl.Float64),
    ).with_columns(
        _signal=pl.when(pos >= 33).then(ewm(pl.col("_macd"), 2 / 10)),
    )
    names = [
        "ret_1d", "ret_3d", "ret_5d", "ret_10d", "ret_20d", "logret_1d", "logret_5d",
        "logret_20d", "ma5_ratio", "ma20_ratio", "ma60_ratio", "rsi14",
    ]
    rest = [
        "bb_pctb", "atr14_norm", "vol_20d", "volume_z20", "turnover_chg", "hl_range",
        "gap_open", "close_loc", "dist_52w_high", "dist_52w_low", "dow",
    ]
    return feats.select(
        "code",
        "date",
        *names,
        pl.col("_macd").alias("macd"),
        pl.col("_signal").alias("macd_signal"),
        (pl.col("_macd") - pl.col("_signal")).alias("macd_hist"),
        *rest,
    ).collect()


def save(frame: pl.DataFrame, path: str) -> None:
    frame.write_parquet(path)


def rows(frame: pl.DataFrame) -> int:
    return frame.height


def threads() -> int:
    return pl.thread_pool_size()
