//! End-to-end: the embedded lexical sentiment model. Scoring before any model exists is
//! `skipped` (sentiment.daily falls back to unscored counts); training on the real labelled
//! headlines registers an artifact; scoring then covers every article once, and a re-run
//! scores nothing twice. Skipped when the shared data (`KRXFLOW_DATA`, default
//! ../shared/data) is absent.

use std::path::PathBuf;

use crate::common::{count, krxflow, text};

fn labelled() -> Option<PathBuf> {
    let p = crate::common::shared_data()
        .join("sentiment/news_headlines_labeled/news_train_labeling.csv");
    if p.exists() {
        Some(p)
    } else {
        krxflow_core::skip::real_data_absent(&p);
        None
    }
}

#[test]
fn score_is_skipped_without_a_model_then_train_registers_one_and_scoring_is_idempotent() {
    let Some(csv) = labelled() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let ds = "2024-12-16";
    // Synthetic news to score.
    let o = krxflow(&lake, &["run", "demo", "--date", ds]);
    assert!(o.status.success(), "{}", text(&o));
    let news = count(&lake, "SELECT count(*) FROM news");
    assert!(news > 100);

    let score_only = dir.path().join("score.yaml");
    std::fs::write(
        &score_only,
        "dag: score_only\ntasks:\n  score:\n    op: sentiment.lexical\n    inputs: { news: news, registry: model_registry, scores: news_scores }\n    outputs: { scores: news_scores }\n",
    )
    .unwrap();
    let o = krxflow(&lake, &["run", score_only.to_str().unwrap(), "--date", ds]);
    assert!(o.status.success(), "skipped is not a failure: {}", text(&o));
    assert!(text(&o).contains("skipped"), "{}", text(&o));

    // Train (smaller hash space than the default, for a fast debug-build test) on the real
    // headlines plus a second labelled file (other columns, word labels, two bad rows), then
    // score.
    let also = dir.path().join("also.csv");
    std::fs::write(
        &also,
        "label,text\npositive,목표가 상향 급등\nnegative,\nnegative,적자 전환 급락\nmaybe,애매한 기사\nneutral,주주총회 공시\n",
    )
    .unwrap();
    let dag = dir.path().join("lexical.yaml");
    std::fs::write(
        &dag,
        format!(
            "dag: lexical_test\ntasks:\n  train:\n    op: sentiment.train_lexical\n    with:\n      path: \"{}\"\n      dims: 2048\n      also: [{{ path: \"{}\", text_column: text, label_column: label }}]\n    outputs: {{ registry: model_registry, rejects: training_rejects }}\n  score:\n    op: sentiment.lexical\n    inputs: {{ news: news, registry: model_registry, scores: news_scores }}\n    outputs: {{ scores: news_scores }}\n",
            csv.display(),
            also.display()
        ),
    )
    .unwrap();
    let o = krxflow(&lake, &["run", dag.to_str().unwrap(), "--date", ds]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count(&lake, "SELECT count(*) FROM model_registry"), 1);
    // The second file's bad rows are quarantined under its own path, with their reasons.
    let reasons = krxflow(
        &lake,
        &[
            "sql",
            "SELECT source, line, reason FROM training_rejects ORDER BY line",
            "--format",
            "csv",
        ],
    );
    let reasons = String::from_utf8_lossy(&reasons.stdout).to_string();
    let also_path = also.display().to_string();
    assert_eq!(
        reasons
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        [
            format!("{also_path},2,empty_text"),
            format!("{also_path},4,unknown_label")
        ],
        "{reasons}"
    );
    let metrics: String = {
        let o = krxflow(
            &lake,
            &[
                "sql",
                "SELECT metrics FROM model_registry",
                "--format",
                "json",
            ],
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        metrics.contains("holdout_by_source") && metrics.contains("also.csv"),
        "each file's holdout is reported: {metrics}"
    );
    let path: String = {
        let o = krxflow(
            &lake,
            &["sql", "SELECT path FROM model_registry", "--format", "csv"],
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert!(lake.join(&path).exists(), "artifact at {path}");
    assert!(
        lake.join(path.replace("model.json", "metrics.json"))
            .exists()
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM news_scores WHERE model = 'lexical'"
        ),
        news,
        "every article scored once"
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM news_scores WHERE score < -1 OR score > 1 OR abs(p_neg + p_neu + p_pos - 1) > 1e-9"
        ),
        0
    );
    // Scoring again writes nothing new.
    let o = krxflow(
        &lake,
        &[
            "run",
            score_only.to_str().unwrap(),
            "--date",
            ds,
            "--reprocess",
            "all",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already_scored="), "{}", text(&o));
    assert_eq!(count(&lake, "SELECT count(*) FROM news_scores"), news);
}
