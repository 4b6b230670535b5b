"""Reads every table of a krxflow lake with the `deltalake` Python package and with Polars.

Usage: read_lake.py LAKE TABLE...   (TABLE as `krxflow tables` names it, e.g. _krxflow/runs)

Prints one JSON object: per table, the Delta version and row count `deltalake` sees (through
its own SQL engine), and the row count and a checksum per column Polars computes from
`pl.read_delta`: numbers summed, strings by total characters, dates by days since 1970, timestamps by
microseconds since the epoch.
tests/e2e/interop.rs compares them with `krxflow sql`.
"""

import json
import math
import os
import sys

import polars as pl
from deltalake import DeltaTable, QueryBuilder


def checksum(series: pl.Series):
    dtype = series.dtype
    if dtype.is_numeric():
        kind, value = "num", series.cast(pl.Float64).sum()
    elif dtype == pl.Utf8:
        kind, value = "str", series.str.len_chars().sum()
    elif dtype == pl.Date:
        kind, value = "date", series.cast(pl.Int32).sum()
    elif isinstance(dtype, pl.Datetime):
        # Microseconds since the epoch, UTC: a reader that shifts time zones disagrees.
        kind, value = "ts", series.dt.cast_time_unit("us").cast(pl.Int64).cast(pl.Float64).sum()
    else:
        return None
    # SQL's sum over no value is NULL where Polars says 0.
    value = float(value) if value is not None and series.null_count() < len(series) else None
    if value is not None and not math.isfinite(value):
        value = str(value)
    return {"kind": kind, "sum": value}


def main() -> None:
    root, tables = sys.argv[1], sys.argv[2:]
    out = {}
    for name in tables:
        path = os.path.join(root, name)
        dt = DeltaTable(path)
        counted = QueryBuilder().register("t", dt).execute("SELECT count(*) AS n FROM t").read_all()
        delta_rows = pl.DataFrame(counted)["n"][0]
        df = pl.read_delta(path)
        columns = {}
        for c in df.columns:
            s = checksum(df[c])
            if s is not None:
                columns[c] = s
        out[name] = {
            "version": dt.version(),
            "deltalake_rows": int(delta_rows),
            "polars_rows": df.height,
            "columns": columns,
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
