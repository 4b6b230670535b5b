//! The matured outcomes the ensemble learns from, gathered for the calibration and the ranking
//! skill: a year of the full market is millions of `prediction_outcomes` rows in no useful
//! order (the matcher's merge appends them as they come), so rows are placed by integer ids in
//! dense grids instead of being grouped in maps keyed by strings.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use krxflow_core::OpResult;

use super::conformal::Matured;
use super::rank_skill::Scored;
use crate::cols::{date_col, f64_col, rows, str_col, typed};

type Fast = foldhash::fast::RandomState;

/// `vol_20d` by (code, day) over the days of one read: a row per code, a column per day.
/// Keys borrow the batch's strings.
pub struct VolGrid<'a> {
    ids: HashMap<&'a str, u32, Fast>,
    /// The first day (days since 1970-01-01) and the number of days.
    first: i32,
    width: usize,
    /// `NaN`: no usable volatility (missing, non-finite or not positive).
    vol: Vec<f64>,
}

impl<'a> VolGrid<'a> {
    /// The grid of the batches' `code`, `date`, `vol_20d` (a `features_daily` read, its
    /// batches as read: a year of the market is not copied into one).
    pub fn of(batches: &'a [RecordBatch]) -> OpResult<Self> {
        let mut ids: HashMap<&'a str, u32, Fast> = HashMap::default();
        let mut cols = Vec::with_capacity(batches.len());
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            cols.push((
                str_col(b, "code")?,
                date_col(b, "date")?,
                f64_col(b, "vol_20d")?,
            ));
        }
        let usable = |(code, date, vol): &(&StringArray, &Date32Array, &Float64Array), i: usize| {
            !(code.is_null(i) || date.is_null(i) || vol.is_null(i))
                && vol.value(i).is_finite()
                && vol.value(i) > 0.0
        };
        let (mut first, mut last) = (i32::MAX, i32::MIN);
        for c in &cols {
            for i in (0..c.0.len()).filter(|&i| usable(c, i)) {
                first = first.min(c.1.value(i));
                last = last.max(c.1.value(i));
                let next = ids.len() as u32;
                ids.entry(c.0.value(i)).or_insert(next);
            }
        }
        let width = if ids.is_empty() {
            0
        } else {
            (i64::from(last) - i64::from(first) + 1) as usize
        };
        let mut grid = vec![f64::NAN; ids.len() * width];
        for c in &cols {
            for i in (0..c.0.len()).filter(|&i| usable(c, i)) {
                let row = ids[c.0.value(i)] as usize;
                grid[row * width + (c.1.value(i) - first) as usize] = c.2.value(i);
            }
        }
        Ok(Self {
            ids,
            first: if width == 0 { 0 } else { first },
            width,
            vol: grid,
        })
    }

    /// The code's id (its row), if it has any volatility.
    pub fn id(&self, code: &str) -> Option<u32> {
        self.ids.get(code).copied()
    }

    /// The column of a day inside the grid.
    fn column(&self, day: i32) -> Option<usize> {
        let c = i64::from(day) - i64::from(self.first);
        (0..self.width as i64).contains(&c).then_some(c as usize)
    }

    /// The volatility of code `id` on `day`.
    pub fn at(&self, id: u32, day: i32) -> Option<f64> {
        let v = self.vol[id as usize * self.width + self.column(day)?];
        (!v.is_nan()).then_some(v)
    }

    /// The volatility of `code` on `day`.
    pub fn get(&self, code: &str, day: i32) -> Option<f64> {
        self.at(self.id(code)?, day)
    }
}

/// The ensemble's matured forecasts with target date before `ds` (days) at each of `horizons`:
/// the raw band rebuilt from the member rows at their weights (the stored ensemble band is the
/// calibrated one), the realised close, and the volatility scale at the base date. A
/// prediction without a volatility at its base date is left out (the replay could not scale
/// it); the members' sums run in read order.
pub fn matured_by_horizon(
    batches: &[RecordBatch],
    vol: &VolGrid<'_>,
    horizons: &[u32],
    ds: i32,
) -> OpResult<BTreeMap<u32, Vec<Matured>>> {
    // Each horizon's forecasts in first-seen order, built in place: a `Matured` holds its
    // Σw·q10 and Σw·q90 (and `weights` its Σw) until every row is read, then the band is
    // divided out. A slot per (code, base day, horizon) of the grid holds the forecast's
    // index in its horizon's vector. (A vector of sums copied into these afterwards was a
    // year of forecasts in fresh pages twice.)
    let cells = vol.ids.len() * vol.width * horizons.len();
    let mut slot = vec![u32::MAX; cells];
    // At most a forecast per (code, day) of the grid and per row: reserved (untouched until
    // written), never grown by copying.
    let cap = rows(batches).min(vol.ids.len() * vol.width);
    let mut per: Vec<(Vec<Matured>, Vec<f64>)> = horizons
        .iter()
        .map(|_| (Vec::with_capacity(cap), Vec::with_capacity(cap)))
        .collect();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let (code, base, target) = (
            str_col(b, "code")?,
            date_col(b, "base_date")?,
            date_col(b, "target_date")?,
        );
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let model = str_col(b, "model")?;
        let (q10, q90, actual, weight) = (
            f64_col(b, "q10")?,
            f64_col(b, "q90")?,
            f64_col(b, "actual_close")?,
            f64_col(b, "weight")?,
        );
        let mut ids = CodeIds::new(vol);
        for i in 0..b.num_rows() {
            if [
                code.is_null(i),
                base.is_null(i),
                target.is_null(i),
                horizon.is_null(i),
                model.is_null(i),
                weight.is_null(i),
            ]
            .into_iter()
            .any(|n| n)
                || target.value(i) >= ds
                || model.value(i) == "ensemble"
            {
                continue;
            }
            let (w, lo, hi, y) = (weight.value(i), q10.value(i), q90.value(i), actual.value(i));
            if !(w > 0.0 && lo > 0.0 && hi > 0.0 && y > 0.0 && w.is_finite()) {
                continue;
            }
            let Some(hx) = u32::try_from(horizon.value(i))
                .ok()
                .and_then(|h| horizons.iter().position(|x| *x == h))
            else {
                continue;
            };
            let (Some(id), Some(day)) = (ids.get(code, i), vol.column(base.value(i))) else {
                continue;
            };
            let Some(v) = vol.at(id, base.value(i)) else {
                continue;
            };
            let cell = (id as usize * vol.width + day) * horizons.len() + hx;
            let (forecasts, weights) = &mut per[hx];
            let at = match slot[cell] {
                u32::MAX => {
                    slot[cell] = forecasts.len() as u32;
                    forecasts.push(Matured {
                        base: base.value(i),
                        target: target.value(i),
                        q10: 0.0,
                        q90: 0.0,
                        actual: y,
                        scale: v * f64::from(horizons[hx]).sqrt(),
                    });
                    weights.push(0.0);
                    forecasts.len() - 1
                }
                at => at as usize,
            };
            weights[at] += w;
            forecasts[at].q10 += w * lo;
            forecasts[at].q90 += w * hi;
        }
    }
    let mut out = BTreeMap::new();
    for (&h, (mut forecasts, weights)) in horizons.iter().zip(per) {
        if forecasts.is_empty() {
            continue;
        }
        for (m, w) in forecasts.iter_mut().zip(&weights) {
            m.q10 /= w;
            m.q90 /= w;
        }
        out.insert(h, forecasts);
    }
    Ok(out)
}

/// A batch's codes to grid ids: a row with the previous row's code skips the lookup.
struct CodeIds<'g, 'a> {
    vol: &'g VolGrid<'a>,
    last: Option<(usize, Option<u32>)>,
}

impl<'g, 'a> CodeIds<'g, 'a> {
    fn new(vol: &'g VolGrid<'a>) -> Self {
        Self { vol, last: None }
    }

    fn get(&mut self, code: &StringArray, i: usize) -> Option<u32> {
        if let Some((j, id)) = self.last
            && code.value(j) == code.value(i)
        {
            return id;
        }
        let id = self.vol.id(code.value(i));
        self.last = Some((i, id));
        id
    }
}

/// Each member's matured forecasts as predicted and realised returns, in read order (the
/// ensemble's own rows and rows with a missing or non-positive price left out; `rank_skill`
/// keeps only those matured before ds).
pub fn scored_by_member(batches: &[RecordBatch]) -> OpResult<BTreeMap<String, Vec<Scored>>> {
    // A member has at most every row: its rows reserved for that (untouched until written),
    // not grown by copying (as in `matured_by_horizon`).
    let all = rows(batches);
    let mut members: Vec<(&str, Vec<Scored>)> = Vec::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let (base, target) = (date_col(b, "base_date")?, date_col(b, "target_date")?);
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let model = str_col(b, "model")?;
        let (close, point, actual) = (
            f64_col(b, "base_close")?,
            f64_col(b, "point")?,
            f64_col(b, "actual_close")?,
        );
        // The member of the previous row (a handful of members: a short scan otherwise).
        let mut last: Option<usize> = None;
        for i in 0..b.num_rows() {
            let nulls = [
                base.is_null(i),
                target.is_null(i),
                horizon.is_null(i),
                model.is_null(i),
                close.is_null(i),
                point.is_null(i),
                actual.is_null(i),
            ];
            if nulls.into_iter().any(|n| n) {
                continue;
            }
            let (c, p, y) = (close.value(i), point.value(i), actual.value(i));
            let Ok(h) = u32::try_from(horizon.value(i)) else {
                continue;
            };
            let m = model.value(i);
            if !(c > 0.0 && p > 0.0 && y > 0.0) || m == "ensemble" {
                continue;
            }
            let at = match last.filter(|&k| members[k].0 == m) {
                Some(k) => k,
                None => {
                    let k = match members.iter().position(|(n, _)| *n == m) {
                        Some(k) => k,
                        None => {
                            members.push((m, Vec::with_capacity(all)));
                            members.len() - 1
                        }
                    };
                    last = Some(k);
                    k
                }
            };
            members[at].1.push(Scored {
                base: base.value(i),
                target: target.value(i),
                horizon: h,
                predicted: p / c - 1.0,
                actual: y / c - 1.0,
            });
        }
    }
    // Each member appears once in `members`.
    Ok(members
        .into_iter()
        .map(|(m, rows)| (m.to_string(), rows))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Date32Array, Float64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn vol(rows: &[(&str, i32, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("date", DataType::Date32, false),
                Field::new("vol_20d", DataType::Float64, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    /// (code, base, horizon, target, model, point, q10, q90, actual, weight); base close 100.
    type Row<'a> = (&'a str, i32, i32, i32, &'a str, f64, f64, f64, f64, f64);

    fn outcomes(rows: &[Row<'_>]) -> RecordBatch {
        let f = |n: &str| Field::new(n, DataType::Float64, true);
        let d = |n: &str| Field::new(n, DataType::Date32, false);
        let floats = |k: fn(&Row<'_>) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(k)))
        };
        let dates = |k: fn(&Row<'_>) -> i32| -> ArrayRef {
            Arc::new(Date32Array::from_iter_values(rows.iter().map(k)))
        };
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                d("base_date"),
                Field::new("horizon", DataType::Int32, false),
                d("target_date"),
                Field::new("model", DataType::Utf8, false),
                f("base_close"),
                f("point"),
                f("q10"),
                f("q90"),
                f("actual_close"),
                f("weight"),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                dates(|r| r.1),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
                dates(|r| r.3),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
                floats(|_| 100.0),
                floats(|r| r.5),
                floats(|r| r.6),
                floats(|r| r.7),
                floats(|r| r.8),
                floats(|r| r.9),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_volatility_grid_answers_only_usable_values_inside_its_days() {
        let b = vol(&[
            ("A", 10, 0.02),
            ("A", 12, 0.03),
            ("B", 11, 0.0),
            ("C", 11, f64::NAN),
        ]);
        let g = VolGrid::of(std::slice::from_ref(&b)).unwrap();
        assert_eq!(g.get("A", 10), Some(0.02));
        assert_eq!(g.get("A", 12), Some(0.03));
        assert_eq!(g.get("A", 11), None, "a day without a row");
        assert_eq!(
            (g.get("A", 9), g.get("A", 13)),
            (None, None),
            "outside the days read"
        );
        assert_eq!(
            (g.get("B", 11), g.get("C", 11)),
            (None, None),
            "zero and NaN unusable"
        );
        assert_eq!(g.get("D", 10), None);
        let none = vol(&[]);
        assert_eq!(
            VolGrid::of(std::slice::from_ref(&none))
                .unwrap()
                .get("A", 10),
            None
        );
        // Batches as read (one per data file), an empty one among them: the same grid.
        let parts = [b.slice(0, 1), none, b.slice(1, 3)];
        let split = VolGrid::of(&parts).unwrap();
        for (code, day) in [
            ("A", 10),
            ("A", 11),
            ("A", 12),
            ("B", 11),
            ("C", 11),
            ("D", 10),
        ] {
            assert_eq!(split.get(code, day), g.get(code, day), "{code} {day}");
        }
    }

    #[test]
    fn the_raw_band_is_the_members_weighted_band_of_matured_rows_the_replay_can_scale() {
        let grid = vol(&[("A", 10, 0.02), ("A", 11, 0.04)]);
        let g = VolGrid::of(std::slice::from_ref(&grid)).unwrap();
        // Members of one prediction apart from each other, as the lake returns them.
        let b = outcomes(&[
            ("A", 10, 1, 11, "ets", 101.0, 90.0, 110.0, 104.0, 0.6),
            ("B", 10, 1, 11, "ets", 101.0, 90.0, 110.0, 104.0, 1.0), // no volatility for B
            ("A", 10, 3, 12, "lgbm", 101.0, 96.0, 104.0, 99.0, 1.0),
            ("A", 10, 1, 11, "ensemble", 101.0, 50.0, 150.0, 104.0, 1.0), // its own row
            ("A", 11, 1, 13, "ets", 101.0, 90.0, 110.0, 104.0, 1.0),      // matures on ds
            ("A", 10, 2, 12, "ets", 101.0, 90.0, 110.0, 104.0, 1.0),      // a horizon not asked
            ("A", 10, 1, 11, "lgbm", 101.0, 95.0, 105.0, 104.0, 0.4),
            ("A", 11, 1, 12, "lgbm", 101.0, 95.0, 105.0, 104.0, 0.0), // no weight
        ]);
        let m = matured_by_horizon(&[b], &g, &[1, 3], 13).unwrap();
        assert_eq!(m.len(), 2);
        let h1 = &m[&1];
        assert_eq!(h1.len(), 1);
        let r = &h1[0];
        assert_eq!((r.base, r.target, r.actual), (10, 11, 104.0));
        assert!((r.q10 - (0.6 * 90.0 + 0.4 * 95.0)).abs() < 1e-12);
        assert!((r.q90 - (0.6 * 110.0 + 0.4 * 105.0)).abs() < 1e-12);
        assert_eq!(r.scale, 0.02);
        let h3 = &m[&3];
        assert_eq!((h3.len(), h3[0].q10, h3[0].q90), (1, 96.0, 104.0));
        assert!((h3[0].scale - 0.02 * 3f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn members_scored_returns_keep_read_order_without_the_ensemble_or_bad_prices() {
        let b = outcomes(&[
            ("A", 10, 1, 11, "ets", 102.0, 0.0, 0.0, 101.0, 1.0),
            ("A", 10, 1, 11, "ensemble", 102.0, 0.0, 0.0, 101.0, 1.0),
            ("B", 10, 1, 11, "lgbm", 0.0, 0.0, 0.0, 101.0, 1.0),
            ("B", 10, 1, 11, "ets", 98.0, 0.0, 0.0, 97.0, 1.0),
            ("C", 10, 1, 11, "lgbm", 110.0, 0.0, 0.0, 120.0, 1.0),
        ]);
        let s = scored_by_member(&[b]).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["ets", "lgbm"]);
        let ets: Vec<(f64, f64)> = s["ets"].iter().map(|r| (r.predicted, r.actual)).collect();
        assert_eq!(ets.len(), 2);
        assert!((ets[0].0 - 0.02).abs() < 1e-12 && (ets[1].1 + 0.03).abs() < 1e-12);
        assert_eq!(s["lgbm"].len(), 1, "a zero point is not a forecast");
    }
}
