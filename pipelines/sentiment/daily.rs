//! `sentiment.daily`: per (code, trading day) news counts and sentiment from `news` and
//! whichever per-article scores exist in `news_scores`.
//!
//! The trading day an article counts for: its KST publication day when that is a trading day
//! and it was published at or before the close (15:30 KST, `cutoff`); otherwise the next trading
//! day. A date-only article (stamped 23:59:59 by `ingest.news`) therefore counts for the next
//! trading day, never for the day whose close it could not have informed. Only rows for trading
//! days <= ds are written: a run for D never writes D+1's partial row.
//!
//! Per row: n_articles (all articles, scored or not), n_scored, mean_score (plain mean of
//! scores in [-1, 1]), weighted_score (mean weighted by the source weight, defaults
//! naver_finance 1.0, google_rss 0.7, dart 0.5, other sources 0.5), pos/neg/neu ratio of labels
//! among scored articles. With several models in `news_scores`, the first of `models` that
//! scored an article is used.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use async_trait::async_trait;
use chrono::{NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Asia::Seoul;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::dates::days;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyParams {
    #[serde(default = "default_weights")]
    pub source_weights: BTreeMap<String, f64>,
    /// Weight of a source not in `source_weights`.
    #[serde(default = "default_other")]
    pub other_weight: f64,
    /// KST time of day after which news counts for the next trading day.
    #[serde(default = "default_cutoff")]
    pub cutoff: String,
    /// Preferred scoring models, best first (default: any, by name).
    #[serde(default)]
    pub models: Vec<String>,
    /// Only rewrite trading days from `overlap_days` before the table's watermark, reading
    /// only the news that can count for them. Scores added later for older articles (a model
    /// registered after the news arrived) reach older days with a full refresh
    /// (`--reprocess all`).
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// Trading days rewritten before the watermark when incremental.
    #[serde(default = "default_overlap")]
    pub overlap_days: u32,
}

fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    5
}

fn default_weights() -> BTreeMap<String, f64> {
    [("naver_finance", 1.0), ("google_rss", 0.7), ("dart", 0.5)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
fn default_other() -> f64 {
    0.5
}
fn default_cutoff() -> String {
    "15:30".into()
}

/// The trading day news published at `at` (KST, local time) counts for.
pub fn effective_day(
    cal: &dyn Calendar,
    at: chrono::NaiveDateTime,
    cutoff: NaiveTime,
) -> NaiveDate {
    let day = at.date();
    if cal.is_trading_day(day) && at.time() <= cutoff {
        day
    } else {
        cal.next_trading_day(day)
    }
}

#[derive(Debug, Clone)]
struct Score {
    model_rank: usize,
    score: f64,
    label: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DayStats {
    pub n_articles: i64,
    pub n_scored: i64,
    /// Each scored article's (id, score, source weight), summed in id order at the end so
    /// that the sums do not depend on the order the rows were read in.
    scored: Vec<(String, f64, f64)>,
    sum: f64,
    wsum: f64,
    wtot: f64,
    pos: i64,
    neg: i64,
    neu: i64,
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> OpResult<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| OpError::permanent(format!("column `{name}` missing or not text")))
}

/// Aggregates news (+ scores) into rows of `sentiment_daily` for trading days <= ds.
pub fn aggregate(
    news: &[RecordBatch],
    scores: &[RecordBatch],
    p: &DailyParams,
    cal: &dyn Calendar,
    ds: NaiveDate,
) -> OpResult<(RecordBatch, BTreeMap<String, i64>)> {
    aggregate_window(news, scores, p, cal, (None, ds))
}

/// [`aggregate`] for trading days in `[from, ds]` (`from` `None`: all up to ds). The caller
/// must pass every article published on or after the trading day before `from`.
pub fn aggregate_window(
    news: &[RecordBatch],
    scores: &[RecordBatch],
    p: &DailyParams,
    cal: &dyn Calendar,
    (from, ds): (Option<NaiveDate>, NaiveDate),
) -> OpResult<(RecordBatch, BTreeMap<String, i64>)> {
    let cutoff = NaiveTime::parse_from_str(&p.cutoff, "%H:%M")
        .map_err(|_| OpError::permanent(format!("cutoff `{}` is not HH:MM", p.cutoff)))?;
    let rank = |m: &str| {
        p.models
            .iter()
            .position(|x| x == m)
            .unwrap_or(p.models.len())
    };
    let mut best: HashMap<String, Score> = HashMap::new();
    for b in scores {
        let (id, model, label) = (
            strings(b, "id")?,
            strings(b, "model")?,
            strings(b, "label")?,
        );
        let score = b
            .column_by_name("score")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .ok_or_else(|| OpError::permanent("news_scores.score missing"))?;
        for i in 0..b.num_rows() {
            if score.is_null(i) || !score.value(i).is_finite() {
                continue;
            }
            let s = Score {
                model_rank: rank(model.value(i)),
                score: score.value(i).clamp(-1.0, 1.0),
                label: label.value(i).to_ascii_lowercase(),
            };
            match best.get(id.value(i)) {
                Some(prev) if prev.model_rank <= s.model_rank => {}
                _ => {
                    best.insert(id.value(i).to_string(), s);
                }
            }
        }
    }
    let mut counters = BTreeMap::new();
    let mut stats: BTreeMap<(String, NaiveDate), DayStats> = BTreeMap::new();
    for b in news {
        let (id, code, source) = (
            strings(b, "id")?,
            strings(b, "code")?,
            strings(b, "source")?,
        );
        let at = b
            .column_by_name("published_at")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| OpError::permanent("news.published_at missing"))?;
        for i in 0..b.num_rows() {
            let Some(t) = Seoul.timestamp_millis_opt(at.value(i)).single() else {
                *counters.entry("skipped.bad_timestamp".into()).or_insert(0) += 1;
                continue;
            };
            let day = effective_day(cal, t.naive_local(), cutoff);
            if day > ds {
                *counters.entry("deferred.after_ds".into()).or_insert(0) += 1;
                continue;
            }
            if from.is_some_and(|f| day < f) {
                *counters
                    .entry("out_of_scope.before_window".into())
                    .or_insert(0) += 1;
                continue;
            }
            *counters.entry("articles".into()).or_insert(0) += 1;
            let st = stats.entry((code.value(i).to_string(), day)).or_default();
            st.n_articles += 1;
            if let Some(s) = best.get(id.value(i)) {
                let w = p
                    .source_weights
                    .get(source.value(i))
                    .copied()
                    .unwrap_or(p.other_weight);
                st.n_scored += 1;
                st.scored.push((id.value(i).to_string(), s.score, w));
                match s.label.as_str() {
                    "positive" | "pos" => st.pos += 1,
                    "negative" | "neg" => st.neg += 1,
                    _ => st.neu += 1,
                }
            }
        }
    }
    for st in stats.values_mut() {
        st.scored
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        for (_, score, w) in &st.scored {
            st.sum += score;
            st.wsum += w * score;
            st.wtot += w;
        }
    }
    let ratio = |n: i64, st: &DayStats| (st.n_scored > 0).then(|| n as f64 / st.n_scored as f64);
    let rows: Vec<(&(String, NaiveDate), &DayStats)> = stats.iter().collect();
    let batch = RecordBatch::try_new(
        tables::sentiment_daily().schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.0.as_str()),
            )) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.0.1)),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.n_articles),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.n_scored),
            )),
            Arc::new(Float64Array::from_iter(rows.iter().map(|(_, s)| {
                (s.n_scored > 0).then(|| s.sum / s.n_scored as f64)
            }))),
            Arc::new(Float64Array::from_iter(
                rows.iter()
                    .map(|(_, s)| (s.wtot > 0.0).then(|| s.wsum / s.wtot)),
            )),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|(_, s)| ratio(s.pos, s)),
            )),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|(_, s)| ratio(s.neg, s)),
            )),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|(_, s)| ratio(s.neu, s)),
            )),
        ],
    )?;
    counters.insert("rows".into(), batch.num_rows() as i64);
    counters.insert(
        "scored_articles".into(),
        stats.values().map(|s| s.n_scored).sum(),
    );
    Ok((batch, counters))
}

pub struct SentimentDaily;

struct Configured {
    p: DailyParams,
}

#[async_trait]
impl Operator for SentimentDaily {
    fn kind(&self) -> &'static str {
        "sentiment.daily"
    }
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "Daily news count and sentiment per code; news after the 15:30 KST close counts for the next trading day"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "source_weights",
                "map<source, f64>",
                "naver_finance 1.0, google_rss 0.7, dart 0.5",
                "weight of each news source in weighted_score",
            ),
            ParamSpec::optional("other_weight", "f64", "0.5", "weight of any other source"),
            ParamSpec::optional(
                "cutoff",
                "HH:MM",
                "15:30",
                "KST time after which news counts for the next trading day",
            ),
            ParamSpec::optional(
                "models",
                "list<string>",
                "[]",
                "preferred scoring models, best first",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "rewrite only days from overlap_days before the watermark, reading only their news",
            ),
            ParamSpec::optional(
                "overlap_days",
                "int",
                "5",
                "trading days rewritten before the watermark",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new("news", tables::news().schema, "articles"),
            InputPort::new(
                "scores",
                tables::news_scores_required(),
                "per-article scores",
            )
            .optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::sentiment_daily(), "sentiment", WriteMode::Merge)
                .doc("daily sentiment per code")
                .with_watermark(),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: DailyParams = parse_params(params)?;
        if NaiveTime::parse_from_str(&p.cutoff, "%H:%M").is_err() {
            return Err(ConfigError::new(
                "cutoff",
                format!("`{}` is not HH:MM", p.cutoff),
            ));
        }
        if let Some((s, w)) = p
            .source_weights
            .iter()
            .find(|(_, w)| w.is_nan() || **w < 0.0)
        {
            return Err(ConfigError::new(
                "source_weights",
                format!("weight of `{s}` is {w}; weights must be >= 0"),
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

impl Configured {
    /// The first trading day this run writes: the watermark minus the overlap when
    /// incremental, else `None` (all history).
    fn emit_from(&self, watermark: Option<NaiveDate>, cal: &dyn Calendar) -> Option<NaiveDate> {
        watermark
            .filter(|_| self.p.incremental)
            .map(|w| cal.add_trading_days(w, -i64::from(self.p.overlap_days)))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// News published before the trading day preceding the first written day cannot count
    /// for it (it counts for that day at the latest), so it is not read.
    fn read_from(
        &self,
        port: &str,
        _ds: NaiveDate,
        watermarks: &BTreeMap<String, NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        if !matches!(port, "news" | "scores") {
            return None;
        }
        let from = self.emit_from(watermarks.get("sentiment").copied(), cal)?;
        Some(cal.add_trading_days(from, -1))
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let news = inputs.batches("news")?;
        let scores: &[RecordBatch] = if inputs.has("scores") {
            inputs.batches("scores")?
        } else {
            &[]
        };
        let from = self.emit_from(
            ctx.watermarks.get("sentiment").copied(),
            ctx.calendar.as_ref(),
        );
        let (batch, counters) =
            aggregate_window(news, scores, &self.p, ctx.calendar.as_ref(), (from, ctx.ds))?;
        for (k, v) in counters {
            ctx.counters.add(&k, v);
        }
        Ok(OutputBatches::new().with("sentiment", vec![batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::news::{Article, news_batch};
    use crate::testutil::d;
    use krxflow_core::WeekdayCalendar;

    fn at(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn article(id: &str, code: &str, t: &str) -> Article {
        Article {
            id: id.into(),
            code: code.into(),
            published_at: at(t),
            title: "t".into(),
            body: None,
            url: None,
        }
    }

    fn scores(rows: &[(&str, &str, &str, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            tables::news_scores().schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "005930"))),
                Arc::new(Date32Array::from_iter_values(rows.iter().map(|_| 0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(Float64Array::from(vec![None::<f64>; rows.len()])),
                Arc::new(Float64Array::from(vec![None::<f64>; rows.len()])),
                Arc::new(Float64Array::from(vec![None::<f64>; rows.len()])),
                arrow::array::new_null_array(
                    crate::tables::embedding_field().data_type(),
                    rows.len(),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn news_after_the_close_or_on_holidays_counts_for_the_next_trading_day() {
        let cal = WeekdayCalendar::default();
        let cut = NaiveTime::from_hms_opt(15, 30, 0).unwrap();
        assert_eq!(
            effective_day(&cal, at("2024-12-16 15:30"), cut),
            d("2024-12-16")
        );
        assert_eq!(
            effective_day(&cal, at("2024-12-16 15:31"), cut),
            d("2024-12-17")
        );
        assert_eq!(
            effective_day(&cal, at("2024-12-20 18:00"), cut),
            d("2024-12-23")
        );
        assert_eq!(
            effective_day(&cal, at("2024-12-21 10:00"), cut),
            d("2024-12-23")
        );
    }

    #[test]
    fn a_window_writes_the_same_rows_as_a_full_aggregation_for_its_days() {
        let cal = WeekdayCalendar::default();
        // Friday after the close and Saturday count for Monday 12-16; Friday before the
        // close counts for Friday; Thursday for Thursday.
        let news = news_batch(
            &[
                article("thu", "005930", "2024-12-12 10:00"),
                article("fri", "005930", "2024-12-13 10:00"),
                article("fri_late", "005930", "2024-12-13 16:00"),
                article("sat", "005930", "2024-12-14 09:00"),
                article("mon", "005930", "2024-12-16 09:00"),
                article("tue", "005930", "2024-12-17 09:00"),
            ],
            "naver_finance",
        )
        .unwrap();
        let p: DailyParams = serde_json::from_value(serde_json::json!({})).unwrap();
        let ds = d("2024-12-17");
        let (full, _) = aggregate(std::slice::from_ref(&news), &[], &p, &cal, ds).unwrap();
        let from = d("2024-12-16");
        let (part, c) =
            aggregate_window(std::slice::from_ref(&news), &[], &p, &cal, (Some(from), ds)).unwrap();
        assert_eq!(
            c["out_of_scope.before_window"], 2,
            "thu and fri count before the window"
        );
        // The window's rows are the full aggregation's rows from `from` on.
        let from_days = days(from);
        let dates = part.column_by_name("date").unwrap();
        let keep = arrow::compute::kernels::cmp::gt_eq(
            full.column_by_name("date").unwrap(),
            &Date32Array::new_scalar(from_days),
        )
        .unwrap();
        let expected = arrow::compute::filter_record_batch(&full, &keep).unwrap();
        assert_eq!(part, expected);
        assert_eq!(dates.len(), 2, "monday (fri_late, sat, mon) and tuesday");
    }

    #[test]
    fn daily_rows_weight_sources_and_never_include_days_after_ds() {
        let cal = WeekdayCalendar::default();
        let a = [
            article("a", "005930", "2024-12-16 09:00"),
            article("b", "005930", "2024-12-16 10:00"),
            article("c", "005930", "2024-12-16 11:00"),
        ];
        let naver = news_batch(&a, "naver_finance").unwrap();
        let rss = news_batch(&[article("r", "005930", "2024-12-16 12:00")], "google_rss").unwrap();
        let late = news_batch(
            &[article("late", "005930", "2024-12-16 23:59")],
            "naver_finance",
        )
        .unwrap();
        let sc = scores(&[
            ("a", "lexical", "positive", 0.8),
            ("a", "kr_finbert_sc", "positive", 0.6),
            ("b", "kr_finbert_sc", "negative", -0.4),
            ("r", "kr_finbert_sc", "positive", 1.0),
        ]);
        let p = DailyParams {
            source_weights: default_weights(),
            other_weight: 0.5,
            cutoff: "15:30".into(),
            models: vec!["kr_finbert_sc".into(), "lexical".into()],
            incremental: true,
            overlap_days: 5,
        };
        let (out, counters) =
            aggregate(&[naver, rss, late], &[sc], &p, &cal, d("2024-12-16")).unwrap();
        assert_eq!(out.num_rows(), 1, "the late article belongs to 2024-12-17");
        assert_eq!(counters["deferred.after_ds"], 1);
        let f = |n: &str| {
            out.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0)
        };
        let i = |n: &str| {
            out.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!((i("n_articles"), i("n_scored")), (4, 3));
        // finbert preferred over lexical for `a`: scores 0.6, -0.4, 1.0.
        assert!((f("mean_score") - 0.4).abs() < 1e-12);
        // weights 1.0, 1.0, 0.7: (0.6 - 0.4 + 0.7) / 2.7
        assert!((f("weighted_score") - 0.9 / 2.7).abs() < 1e-12);
        assert!((f("pos_ratio") - 2.0 / 3.0).abs() < 1e-12);
        assert!((f("neg_ratio") - 1.0 / 3.0).abs() < 1e-12);
        let (next, _) = aggregate(
            &[news_batch(
                &[article("late", "005930", "2024-12-16 23:59")],
                "naver_finance",
            )
            .unwrap()],
            &[],
            &p,
            &cal,
            d("2024-12-17"),
        )
        .unwrap();
        assert_eq!(next.num_rows(), 1);
        let n_scored = next
            .column_by_name("n_scored")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n_scored, 0, "unscored news still counts articles");
        assert!(next.column_by_name("mean_score").unwrap().is_null(0));
    }
}
