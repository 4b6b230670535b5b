//! What every quantile forecaster shares: each code's closes as of ds, the up/flat/down
//! probabilities and confidence derived from nine quantile prices, and the output batch
//! (`chronos_forecasts`, `ets_forecasts`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use krxflow_core::{OpResult, TaskContext};

use crate::cols::{date_col, f64_col, str_col};
use crate::common::dates::days;
use crate::common::direction::FLAT_BAND;
use crate::common::horizons::target_date;

/// The piecewise-linear CDF through `(q[k], levels[k])`, extended linearly beyond the ends.
pub fn quantile_cdf(q: &[f64], levels: &[f64], x: f64) -> f64 {
    let n = q.len();
    if n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return if x < q[0] { 0.0 } else { 1.0 };
    }
    let seg = |i: usize| {
        let (x0, x1, y0, y1) = (q[i], q[i + 1], levels[i], levels[i + 1]);
        if x1 > x0 {
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        } else if x < x0 {
            y0
        } else {
            y1
        }
    };
    let v = if x <= q[0] {
        seg(0)
    } else if x >= q[n - 1] {
        seg(n - 2)
    } else {
        let i = q.partition_point(|v| *v <= x).saturating_sub(1).min(n - 2);
        seg(i)
    };
    v.clamp(0.0, 1.0)
}

/// What a row of `chronos_forecasts` derives from nine quantile prices and the base close.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub median: f64,
    pub expected_return: f64,
    pub prob_up: f64,
    pub prob_flat: f64,
    pub prob_down: f64,
    pub conf: f64,
}

pub fn derive(q: &[f64; 9], close: f64) -> Derived {
    let mut sorted = *q;
    sorted.sort_by(f64::total_cmp);
    let levels: Vec<f64> = (1..=9).map(|k| f64::from(k) / 10.0).collect();
    let down = quantile_cdf(&sorted, &levels, close * (1.0 - FLAT_BAND));
    let up = 1.0 - quantile_cdf(&sorted, &levels, close * (1.0 + FLAT_BAND));
    let flat = (1.0 - up - down).max(0.0);
    let median = sorted[4];
    let med_ret = median / close - 1.0;
    let width = (sorted[8] - sorted[0]) / close;
    Derived {
        median,
        expected_return: sorted.iter().sum::<f64>() / 9.0 / close - 1.0,
        prob_up: up,
        prob_flat: flat,
        prob_down: down,
        conf: (1.0 - (width / med_ret.abs().max(0.001)) / 2.0).clamp(0.0, 1.0),
    }
}

/// One forecast row: nine quantile prices of `code`'s close `horizon` trading days after ds.
#[derive(Debug, Clone)]
pub struct QuantileRow {
    pub code: String,
    pub horizon: u32,
    pub close: f64,
    pub q: [f64; 9],
    pub context_len: usize,
    /// The model that made the row (e.g. the Chronos folder, `ets:AAdN`).
    pub model: String,
}

/// Each code's (date, close) up to `ds`, in date order, for codes whose last bar is on `ds`
/// with a positive finite close (`codes` empty = every code). Rows dated after `ds` are
/// ignored even if present: no look-ahead.
pub fn closes_as_of(
    bars: &[RecordBatch],
    ds: NaiveDate,
    codes: &[String],
) -> OpResult<BTreeMap<String, Vec<(i32, f64)>>> {
    let mut series = closes_through(bars, ds, codes)?;
    let ds = days(ds);
    series.retain(|_, v| {
        v.last()
            .is_some_and(|&(d, c)| d == ds && c.is_finite() && c > 0.0)
    });
    Ok(series)
}

/// Each code's (date, close) up to `ds`, in date order (`codes` empty = every code); rows
/// dated after `ds` are ignored. `bars`: the batches as read (one per data file), not
/// concatenated.
pub fn closes_through(
    bars: &[RecordBatch],
    ds: NaiveDate,
    codes: &[String],
) -> OpResult<BTreeMap<String, Vec<(i32, f64)>>> {
    let ds = days(ds);
    let mut cols = Vec::with_capacity(bars.len());
    for b in bars.iter().filter(|b| b.num_rows() > 0) {
        cols.push((
            str_col(b, "code")?,
            date_col(b, "date")?,
            f64_col(b, "close")?,
        ));
    }
    // One vector per code, found through a hash map only when the code changes from the
    // previous row's (the rows of a compacted file come grouped by code, a day's file by
    // date). Two passes: the first counts each code's rows, the second fills vectors of that
    // size (grown by doubling, a year of the market moved into fresh pages several times).
    let mut slots: HashMap<&str, Option<usize>, foldhash::fast::RandomState> = HashMap::default();
    let mut gathered: Vec<(&str, Vec<(i32, f64)>)> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for pass in 0..2 {
        let mut last: Option<(&str, Option<usize>)> = None;
        for (code, date, close) in &cols {
            for i in 0..code.len() {
                if code.is_null(i) || date.is_null(i) || close.is_null(i) || date.value(i) > ds {
                    continue;
                }
                let c = code.value(i);
                let slot = match last {
                    Some((k, slot)) if k == c => slot,
                    _ => {
                        let slot = *slots.entry(c).or_insert_with(|| {
                            (codes.is_empty() || codes.iter().any(|x| x == c)).then(|| {
                                counts.push(0);
                                gathered.push((c, Vec::new()));
                                gathered.len() - 1
                            })
                        });
                        last = Some((c, slot));
                        slot
                    }
                };
                match (pass, slot) {
                    (0, Some(s)) => counts[s] += 1,
                    (_, Some(s)) => gathered[s].1.push((date.value(i), close.value(i))),
                    (_, None) => {}
                }
            }
        }
        if pass == 0 {
            for (g, n) in gathered.iter_mut().zip(&counts) {
                g.1.reserve_exact(*n);
            }
        }
    }
    let mut series: BTreeMap<String, Vec<(i32, f64)>> = BTreeMap::new();
    for (c, run) in gathered {
        series.insert(c.to_string(), run);
    }
    for v in series.values_mut() {
        v.sort_by_key(|r| r.0);
    }
    Ok(series)
}

/// The rows as a batch of a quantile-forecast table (`schema`): the forecast head, q10..q90,
/// the derived columns, context_len and the model that made each row.
pub fn quantile_forecasts_batch(
    schema: SchemaRef,
    rows: &[QuantileRow],
    ctx: &TaskContext,
) -> OpResult<RecordBatch> {
    let n = rows.len();
    let ds = days(ctx.ds);
    let derived: Vec<Derived> = rows.iter().map(|r| derive(&r.q, r.close)).collect();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.code.as_str()),
        )),
        Arc::new(Date32Array::from(vec![ds; n])),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.horizon as i32),
        )),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| {
            days(target_date(ctx.calendar.as_ref(), ctx.ds, r.horizon))
        }))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.close))),
    ];
    for k in 0..9 {
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.q[k]),
        )));
    }
    let f = |g: fn(&Derived) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(derived.iter().map(g)))
    };
    cols.push(f(|d| d.median));
    cols.push(f(|d| d.expected_return));
    cols.push(f(|d| d.prob_up));
    cols.push(f(|d| d.prob_flat));
    cols.push(f(|d| d.prob_down));
    cols.push(f(|d| d.conf));
    cols.push(Arc::new(Int32Array::from_iter_values(
        rows.iter().map(|r| r.context_len as i32),
    )));
    cols.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|r| r.model.as_str()),
    )));
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The input port of a member that forecasts from closes: three columns of `ohlcv_daily`, read
/// projected (the table's other columns are never loaded).
pub fn closes_port() -> krxflow_core::InputPort {
    krxflow_core::InputPort::new(
        "bars",
        crate::tables::subset(&crate::tables::ohlcv_daily(), &["code", "date", "close"]),
        "daily closes",
    )
    .projected()
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::common::dates::date_of;

    #[test]
    fn each_codes_closes_through_a_day_come_in_date_order_however_the_rows_are_grouped() {
        // Code "a" in two runs (two files), dates out of order, a row after the day.
        let rows = [
            ("a", 3, 3.0),
            ("a", 1, 1.0),
            ("b", 2, 20.0),
            ("a", 2, 2.0),
            ("a", 9, 9.0),
        ];
        let schema = Schema::new(vec![
            Field::new("code", DataType::Utf8, true),
            Field::new("date", DataType::Date32, true),
            Field::new("close", DataType::Float64, true),
        ]);
        let bars = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap();
        let day = date_of(3);
        let series = closes_through(std::slice::from_ref(&bars), day, &[]).unwrap();
        assert_eq!(series["a"], vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(series["b"], vec![(2, 20.0)]);
        let only_b = closes_through(std::slice::from_ref(&bars), day, &["b".to_string()]).unwrap();
        assert_eq!(only_b.keys().collect::<Vec<_>>(), vec!["b"]);
        // As of the day: only codes with a close on it.
        let as_of = closes_as_of(std::slice::from_ref(&bars), day, &[]).unwrap();
        assert_eq!(as_of.keys().collect::<Vec<_>>(), vec!["a"]);
        // The batches as read (a code's rows across files, an empty file among them): the
        // same series.
        let n = bars.num_rows();
        let parts = [bars.slice(0, 2), bars.slice(2, 0), bars.slice(2, n - 2)];
        assert_eq!(closes_through(&parts, day, &[]).unwrap(), series);
        assert_eq!(closes_as_of(&parts, day, &[]).unwrap(), as_of);
    }

    #[test]
    fn the_cdf_interpolates_between_quantiles_and_extends_past_the_ends() {
        let q = [90.0, 92.0, 94.0, 96.0, 100.0, 104.0, 106.0, 108.0, 110.0];
        let l: Vec<f64> = (1..=9).map(|k| f64::from(k) / 10.0).collect();
        assert!((quantile_cdf(&q, &l, 100.0) - 0.5).abs() < 1e-12);
        assert!((quantile_cdf(&q, &l, 102.0) - 0.55).abs() < 1e-12);
        assert!((quantile_cdf(&q, &l, 89.0) - 0.05).abs() < 1e-12);
        assert_eq!(quantile_cdf(&q, &l, 10.0), 0.0);
        assert_eq!(quantile_cdf(&q, &l, 1e6), 1.0);
    }

    #[test]
    fn probabilities_follow_the_quantiles_with_the_flat_band() {
        // Symmetric around the close: up = down, and they sum to one with flat.
        let q = [90.0, 92.0, 94.0, 96.0, 100.0, 104.0, 106.0, 108.0, 110.0];
        let d = derive(&q, 100.0);
        assert!((d.prob_up - d.prob_down).abs() < 1e-12);
        assert!((d.prob_up + d.prob_flat + d.prob_down - 1.0).abs() < 1e-12);
        // F(100.3) = 0.5 + 0.1*0.3/4; P(up) = 1 - that.
        assert!((d.prob_up - (0.5 - 0.0075)).abs() < 1e-12);
        assert_eq!(d.median, 100.0);
        assert!(d.expected_return.abs() < 1e-12);
        // Wide interval around a zero median: no confidence.
        assert_eq!(d.conf, 0.0);
        // Entirely above the close: almost surely up; a narrow band gives confidence.
        let q = [
            110.0, 110.1, 110.2, 110.3, 110.4, 110.5, 110.6, 110.7, 110.8,
        ];
        let d = derive(&q, 100.0);
        assert!(d.prob_up > 0.99 && d.prob_down == 0.0, "{d:?}");
        assert!(d.conf > 0.9, "{d:?}");
    }
}
