//! The report's files: `metrics.json` (the whole [`Evaluation`]), one CSV per table or series
//! shown, and `report.html`.

pub mod charts;
pub mod figures;
pub mod html;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{EvalError, EvalResult};
use crate::evaluate::Evaluation;

fn csv<T: Serialize>(
    dir: &Path,
    name: &str,
    rows: &[T],
    written: &mut Vec<PathBuf>,
) -> EvalResult<()> {
    let path = dir.join(name);
    let err = |source| EvalError::Csv {
        path: path.display().to_string(),
        source,
    };
    let mut w = ::csv::Writer::from_path(&path).map_err(err)?;
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    w.flush().map_err(|e| err(e.into()))?;
    written.push(path);
    Ok(())
}

fn file(path: PathBuf, bytes: &[u8], written: &mut Vec<PathBuf>) -> EvalResult<()> {
    std::fs::write(&path, bytes).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    written.push(path);
    Ok(())
}

/// Writes every file into `dir` (created if missing); returns their paths.
pub fn write(ev: &Evaluation, dir: &Path) -> EvalResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    file(
        dir.join("metrics.json"),
        &serde_json::to_vec_pretty(ev)?,
        &mut written,
    )?;
    csv(dir, "summary.csv", &ev.summaries, &mut written)?;
    csv(dir, "hit_diffs.csv", &ev.hit_diffs, &mut written)?;
    csv(dir, "cumulative_hit.csv", &ev.cumulative_hit, &mut written)?;
    csv(dir, "monthly.csv", &ev.monthly, &mut written)?;
    csv(dir, "rank_ic_daily.csv", &ev.rank_ic_daily, &mut written)?;
    csv(
        dir,
        "long_short_daily.csv",
        &ev.long_short_daily,
        &mut written,
    )?;
    csv(dir, "books.csv", &ev.books, &mut written)?;
    csv(dir, "book_days.csv", &ev.book_days, &mut written)?;
    csv(dir, "reliability.csv", &ev.reliability, &mut written)?;
    csv(dir, "weights.csv", &ev.weights, &mut written)?;
    file(
        dir.join("report.html"),
        html::page(ev)?.as_bytes(),
        &mut written,
    )?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::evaluate;
    use crate::evaluate::fixture::{DAYS, config, day, universe};

    #[test]
    fn the_report_writes_every_table_and_a_page_with_every_chart() {
        let ev = evaluate(universe(), day(0), day(DAYS), &config()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write(&ev, dir.path()).unwrap();
        assert_eq!(files.len(), 12);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("metrics.json")).unwrap())
                .unwrap();
        // ensemble, shuffled and five baselines
        assert_eq!(json["summaries"].as_array().unwrap().len(), 7);
        let summary = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
        assert_eq!(summary.lines().count(), 8);
        assert!(summary.starts_with("horizon,model,kind,n,"));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        for id in [
            "hit-h1",
            "ic-h1",
            "coverage-h1",
            "reliability-h1",
            "weights-h1",
            "long-short-h1",
            "book-quintiles-h1",
            "book-dropout-h1",
        ] {
            assert!(
                html.contains(&format!("<figure data-chart=\"{id}\"><svg")),
                "{id}"
            );
        }
        // Self-contained: nothing is fetched (the only URL is the SVG namespace).
        for fetch in ["src=", "href=", "<script", "<link", "url("] {
            assert!(!html.contains(fetch), "{fetch}");
        }
        assert!(html.contains("costs are excluded"));
        assert!(html.contains("charged 0.20% a round trip"));
    }

    #[test]
    fn a_chart_without_data_is_said_in_words_not_drawn_empty() {
        let mut input = universe();
        input.weights.clear();
        let ev = evaluate(input, day(0), day(DAYS), &config()).unwrap();
        let html = html::page(&ev).unwrap();
        assert!(!html.contains("data-chart=\"weights-h1\""));
        assert!(html.contains("Learned member weights, h=1: nothing to draw in this range"));
    }
}
