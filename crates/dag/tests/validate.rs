//! Validation diagnostics: every problem is reported at once, each with file:line:col of the
//! offending YAML node and the names involved.

mod common;

use std::collections::HashMap;

use arrow::datatypes::DataType;
use common::{assert_diag, errors, errors_with, load_str, one, schema};
use krxflow_dag::DiagCode;

#[test]
fn unknown_op_is_reported_with_line_and_suggestion() {
    let diags = errors("unknown_op.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::UnknownOp);
    assert_diag(
        &d,
        8,
        Some(9),
        &[
            "chronos",
            "`forecast.chronoz`",
            "did you mean `forecast.chronos`",
        ],
    );
    assert!(
        d.to_string().ends_with("unknown_op.yaml:8:9: error[unknown-op]: task `chronos`: unknown op `forecast.chronoz` (did you mean `forecast.chronos`?)"),
        "{d}"
    );
}

#[test]
fn unknown_op_without_a_close_kind_has_no_suggestion() {
    let diags = load_str("dag: x\ntasks:\n  t:\n    op: something.else.entirely\n").unwrap_err();
    let d = one(&diags, DiagCode::UnknownOp);
    assert_diag(&d, 4, Some(9), &["something.else.entirely"]);
    assert!(!d.message.contains("did you mean"), "{d}");
}

#[test]
fn unknown_param_points_at_the_field_key_in_with() {
    let diags = errors("unknown_param.yaml");
    let d = one(&diags, DiagCode::UnknownParam);
    assert_diag(
        &d,
        11,
        Some(7),
        &[
            "task `features`",
            "param `windw`",
            "unknown field `windw`",
            "`window`",
            "`min_periods`",
        ],
    );
}

#[test]
fn mistyped_param_names_field_and_expected_type() {
    let diags = errors("mistyped_param.yaml");
    let d = one(&diags, DiagCode::InvalidParam);
    assert_diag(
        &d,
        8,
        Some(7),
        &["task `ingest`", "`lookback_days`", "u32", "many"],
    );
}

#[test]
fn missing_param_points_at_the_with_key() {
    let diags = errors("missing_param.yaml");
    let d = one(&diags, DiagCode::MissingParam);
    assert_diag(
        &d,
        10,
        Some(5),
        &["task `chronos`", "`horizons`", "missing field"],
    );
}

#[test]
fn missing_param_without_with_points_at_the_task() {
    let diags =
        load_str("dag: x\ntasks:\n  feat:\n    op: features.returns\n    inputs: { bars: t }\n")
            .unwrap_err();
    let d = one(&diags, DiagCode::MissingParam);
    assert_diag(&d, 3, Some(3), &["`window`"]);
}

#[test]
fn cycle_through_tables_names_the_tasks_in_order() {
    let diags = errors("cycle_tables.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::Cycle);
    // Reported at the input of `a` that closes the loop: `extra: table_b`.
    assert_diag(
        &d,
        8,
        Some(33),
        &["cycle: a -> b -> a", "`table_a`", "`table_b`"],
    );
}

#[test]
fn cycle_through_after_and_self_after_are_both_reported() {
    let diags = errors("cycle_after.yaml");
    assert_eq!(diags.len(), 2, "{}", krxflow_dag::render(&diags));
    assert_diag(
        &diags[0],
        6,
        Some(13),
        &[
            "cycle: first -> second -> third -> first",
            "runs after `third`",
        ],
    );
    assert_diag(&diags[1], 18, Some(13), &["cycle: loner -> loner"]);
    assert!(diags.iter().all(|d| d.code == DiagCode::Cycle));
}

#[test]
fn input_without_producer_is_reported_unless_optional() {
    let diags = errors("no_producer.yaml");
    // `weights: ensemble_weights` is optional for ensemble.combine: no diagnostic.
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::NoProducer);
    assert_diag(
        &d,
        10,
        Some(16),
        &["task `ensemble`", "input `chronos`", "`chronos_forecast`"],
    );
}

#[test]
fn input_from_an_existing_table_needs_no_producer() {
    let tables = HashMap::from([(
        "chronos_forecast".to_string(),
        schema(&[
            ("ticker", DataType::Utf8),
            ("date", DataType::Date32),
            ("horizon", DataType::Int32),
            ("q50", DataType::Float64),
        ]),
    )]);
    let dag = common::load_with("no_producer.yaml", &tables).unwrap();
    assert_eq!(dag.tasks.len(), 2);
}

#[test]
fn existing_table_with_wrong_column_type_is_a_schema_mismatch() {
    let tables = HashMap::from([(
        "chronos_forecast".to_string(),
        schema(&[
            ("ticker", DataType::Utf8),
            ("date", DataType::Date32),
            ("horizon", DataType::Int64),
            ("q50", DataType::Float64),
        ]),
    )]);
    let diags = errors_with("no_producer.yaml", &tables);
    let d = one(&diags, DiagCode::SchemaMismatch);
    assert_diag(
        &d,
        10,
        Some(16),
        &[
            "`horizon` Int32",
            "`chronos_forecast` (existing table) has Int64",
        ],
    );
}

#[test]
fn producer_consumer_schema_mismatch_names_column_and_types() {
    let diags = errors("schema_mismatch.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::SchemaMismatch);
    assert_diag(&d, 9, Some(21), &[]);
    assert_eq!(
        d.message,
        "task `features` input `bars` needs column `close` Float64 but `ohlcv_daily` (written by `ingest`) has Utf8"
    );
}

#[test]
fn output_into_existing_table_must_carry_its_columns() {
    let tables = HashMap::from([(
        "ohlcv_daily".to_string(),
        schema(&[
            ("ticker", DataType::Utf8),
            ("date", DataType::Date32),
            ("close", DataType::Float32),
            ("adj_close", DataType::Float64),
        ]),
    )]);
    let diags = errors_with("output_mismatch.yaml", &tables);
    assert_eq!(diags.len(), 2, "{}", krxflow_dag::render(&diags));
    assert_diag(
        &diags[0],
        6,
        Some(22),
        &[
            "task `ingest` output `bars`",
            "`ohlcv_daily`",
            "`close` Float32",
            "Float64",
        ],
    );
    assert_diag(
        &diags[1],
        6,
        Some(22),
        &["`adj_close` Float64", "no such column"],
    );
    assert!(diags.iter().all(|d| d.code == DiagCode::SchemaMismatch));
}

#[test]
fn output_into_existing_table_with_a_compatible_schema_is_fine() {
    let tables = HashMap::from([("ohlcv_daily".to_string(), common::bars())]);
    assert!(common::load_with("output_mismatch.yaml", &tables).is_ok());
}

#[test]
fn duplicate_task_is_reported_at_the_second_occurrence() {
    let diags = errors("duplicate_task.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::DuplicateTask);
    assert_diag(&d, 12, Some(3), &["`ingest`", "line 3"]);
}

#[test]
fn bad_cron_names_the_expression() {
    let diags = errors("bad_cron.yaml");
    let d = one(&diags, DiagCode::BadCron);
    assert_diag(&d, 3, Some(9), &["`0 0 25 * * Mon-Fri`", "Hours"]);
    assert!(!d.message.contains('\n'), "{d}");
}

#[test]
fn bad_timezone_names_the_value_and_suggests() {
    let diags = errors("bad_timezone.yaml");
    assert_eq!(
        diags.len(),
        1,
        "a 5-field cron is accepted: {}",
        krxflow_dag::render(&diags)
    );
    let d = one(&diags, DiagCode::BadTimezone);
    assert_diag(
        &d,
        4,
        Some(13),
        &["`Asia/Seol`", "did you mean `Asia/Seoul`"],
    );
}

#[test]
fn unset_env_var_is_reported_at_its_string() {
    let diags = errors("unset_env.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::UnsetEnv);
    assert_diag(
        &d,
        8,
        Some(13),
        &["task `ingest`", "`with.path`", "`KRXFLOW_NOT_SET`"],
    );
}

#[test]
fn unset_env_var_in_params_is_reported() {
    let diags = load_str(
        "dag: x\nparams:\n  root: \"${NOT_SET_ANYWHERE}\"\ntasks:\n  t: { op: util.source }\n",
    )
    .unwrap_err();
    let d = one(&diags, DiagCode::UnsetEnv);
    assert_diag(&d, 3, Some(9), &["`params.root`", "`NOT_SET_ANYWHERE`"]);
}

#[test]
fn unknown_ports_list_the_valid_ones() {
    let diags = errors("unknown_port.yaml");
    let ports: Vec<_> = diags
        .iter()
        .filter(|d| d.code == DiagCode::UnknownPort)
        .collect();
    assert_eq!(ports.len(), 2, "{}", krxflow_dag::render(&diags));
    assert_diag(
        ports[0],
        6,
        Some(16),
        &["task `ingest`", "output port `bar`", "`bars`"],
    );
    assert_diag(
        ports[1],
        10,
        Some(15),
        &["task `features`", "input port `prices`", "`bars`"],
    );
    let unbound = one(&diags, DiagCode::UnboundPort);
    assert_diag(&unbound, 10, Some(5), &["task `features`", "`bars`"]);
}

#[test]
fn after_naming_a_missing_task_is_reported() {
    let diags = errors("unknown_after.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::UnknownTask);
    assert_diag(
        &d,
        11,
        Some(9),
        &["task `report`", "`ingst`", "did you mean `ingest`"],
    );
}

#[test]
fn two_tasks_writing_one_table_are_named() {
    let diags = errors("duplicate_writer.yaml");
    let d = one(&diags, DiagCode::DuplicateWriter);
    assert_diag(
        &d,
        10,
        Some(22),
        &["`ohlcv_daily`", "`ingest_a`", "`ingest_b`"],
    );
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let diags = errors("syntax_error.yaml");
    assert_eq!(diags.len(), 1);
    let d = one(&diags, DiagCode::Syntax);
    assert_diag(&d, 6, Some(8), &["did not find expected"]);
}

#[test]
fn unknown_and_mistyped_dag_fields_are_all_reported() {
    let diags = errors("unknown_fields.yaml");
    assert_eq!(diags.len(), 4, "{}", krxflow_dag::render(&diags));
    assert!(diags.iter().all(|d| d.code == DiagCode::InvalidField));
    assert_diag(
        &diags[0],
        2,
        Some(1),
        &["unknown field `schedul`", "did you mean `schedule`"],
    );
    assert_diag(
        &diags[1],
        4,
        Some(22),
        &["unknown field `backof`", "did you mean `backoff`"],
    );
    assert_diag(
        &diags[2],
        9,
        Some(5),
        &[
            "task `ingest`",
            "unknown field `retry`",
            "did you mean `retries`",
        ],
    );
    assert_diag(
        &diags[3],
        10,
        Some(14),
        &["task `ingest`", "`timeout`", "`soon`"],
    );
}

#[test]
fn several_problems_are_reported_together_in_source_order() {
    let diags = errors("many_errors.yaml");
    let codes: Vec<DiagCode> = diags.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        vec![
            DiagCode::BadTimezone,
            DiagCode::UnknownOp,
            DiagCode::UnsetEnv,
            DiagCode::Cycle,
            DiagCode::InvalidField,
        ],
        "{}",
        krxflow_dag::render(&diags)
    );
    assert_diag(&diags[0], 2, None, &["`Mars/Olympus`"]);
    assert_diag(&diags[1], 5, Some(9), &["`ingest.ohlcvv`"]);
    assert_diag(&diags[2], 6, None, &["`KRXFLOW_MISSING`"]);
    assert_diag(&diags[3], 10, None, &["cycle: a -> b -> a"]);
    assert_diag(&diags[4], 19, None, &["params.window"]);
}

#[test]
fn duplicate_key_inside_a_task_is_reported() {
    let diags =
        load_str("dag: x\ntasks:\n  t:\n    op: util.source\n    op: util.copy\n").unwrap_err();
    let d = one(&diags, DiagCode::InvalidField);
    assert_diag(
        &d,
        5,
        Some(5),
        &["duplicate key `op`", "`tasks.t`", "line 4"],
    );
}

#[test]
fn a_bad_wait_for_is_reported_at_its_line_and_field() {
    let yaml = "\
dag: x
schedule:
  cron: '@daily'
  wait_for:
    dags: [daily_batch, x]
    timeot: 2h
tasks:
  t: { op: util.source }
";
    let diags = load_str(yaml).unwrap_err();
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert_diag(&diags[0], 5, None, &["`x` waits for itself"]);
    assert_diag(
        &diags[1],
        6,
        None,
        &["`schedule.wait_for`", "timeot", "timeout"],
    );
    for (wait_for, line, says) in [
        ("wait_for: daily_batch", 2, "must be a mapping"),
        ("wait_for: { timeout: 1h }", 2, "missing field `dags`"),
        ("wait_for: { dags: [] }", 2, "`dags` names no DAG"),
        (
            "wait_for: { dags: ['no such'] }",
            2,
            "`no such` is not a DAG name",
        ),
        ("wait_for: { dags: [a], timeout: soon }", 2, "soon"),
    ] {
        let yaml = format!(
            "dag: x\nschedule: {{ cron: '@daily', {wait_for} }}\ntasks:\n  t: {{ op: util.source }}\n"
        );
        let diags = load_str(&yaml).unwrap_err();
        assert_eq!(diags.len(), 1, "{wait_for}: {diags:?}");
        assert_diag(&diags[0], line, None, &[says]);
    }
}

#[test]
fn checks_are_read_in_file_order_and_a_bad_one_is_told_at_its_line() {
    let dag = load_str(
        "dag: x\ntasks:\n  t:\n    op: util.source\n    checks:\n      z_first: SELECT 1 WHERE 1 = 0\n      a_second: { sql: 'SELECT * FROM t WHERE d = {ds}', severity: warn }\n",
    )
    .unwrap();
    let checks = &dag.tasks[0].spec.checks;
    let got: Vec<(&str, krxflow_dag::Severity)> = checks
        .iter()
        .map(|c| (c.name.as_str(), c.severity))
        .collect();
    assert_eq!(
        got,
        [
            ("z_first", krxflow_dag::Severity::Error),
            ("a_second", krxflow_dag::Severity::Warn)
        ]
    );
    let ds = chrono::NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
    assert_eq!(
        checks[1].sql_for(ds),
        "SELECT * FROM t WHERE d = DATE '2024-12-16'"
    );

    let yaml = "\
dag: x
tasks:
  t:
    op: util.source
    checks:
      typo: SELEC 1
      writes: { sql: DELETE FROM t }
      loud: { sql: SELECT 1, severity: fatal }
      nosql: { severity: warn }
";
    let diags = load_str(yaml).unwrap_err();
    let got: Vec<(usize, bool)> = diags
        .iter()
        .map(|d| (d.line, d.message.contains("task `t`: ")))
        .collect();
    assert_eq!(
        got,
        [(6, true), (7, true), (8, true), (9, true)],
        "{diags:?}"
    );
    assert!(
        diags[0].message.contains("check `typo`: not valid SQL"),
        "{}",
        diags[0]
    );
    assert!(
        diags[1].message.contains("check `writes`: must be a query"),
        "{}",
        diags[1]
    );
    assert!(diags[2].message.contains("error or warn"), "{}", diags[2]);
    assert!(
        diags[3]
            .message
            .contains("check `nosql`: missing field `sql`"),
        "{}",
        diags[3]
    );
}

#[test]
fn mistyped_structure_fields_are_invalid_field() {
    let yaml = "\
dag: x
max_active_runs: 0
schedule: { cron: '0 0 16 * * *', catchup: sometimes }
tasks:
  t:
    op: util.source
    outputs: [dst]
    depends_on_past: maybe
    retries: { max: -1, backoff: expo }
";
    let diags = load_str(yaml).unwrap_err();
    let lines: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(
        lines,
        vec![(2, 18), (3, 44), (7, 14), (8, 22), (9, 21), (9, 34)],
        "{}",
        krxflow_dag::render(&diags)
    );
    assert!(diags.iter().all(|d| d.code == DiagCode::InvalidField));
    assert!(diags[1].message.contains("`sometimes`"), "{}", diags[1]);
    assert!(diags[5].message.contains("`expo`"), "{}", diags[5]);
}

#[test]
fn not_a_mapping_and_missing_required_fields() {
    let d = load_str("- just\n- a list\n").unwrap_err();
    assert_eq!(d.len(), 1);
    assert_diag(&d[0], 1, Some(1), &["mapping"]);

    let d = load_str("description: nothing else\n").unwrap_err();
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("`dag`")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("`tasks`")), "{msgs:?}");

    let d = load_str("").unwrap_err();
    assert_eq!(d[0].code, DiagCode::InvalidField);
}

#[test]
fn bad_param_reference_is_invalid_field_naming_known_params() {
    let diags = load_str(
        "dag: x\nparams: { horizons: [1] }\ntasks:\n  c:\n    op: forecast.chronos\n    inputs: { bars: b }\n    with: { model: m, horizons: \"${params.horizon}\" }\n  i:\n    op: ingest.ohlcv\n    with: { source: s, path: p }\n    outputs: { bars: b }\n",
    )
    .unwrap_err();
    let d = one(&diags, DiagCode::InvalidField);
    assert_diag(&d, 7, Some(33), &["`${params.horizon}`", "`horizons`"]);
}

#[test]
fn missing_file_is_one_io_diagnostic_at_the_start() {
    let registry = common::registry();
    let ctx = krxflow_dag::LoadContext {
        registry: &registry,
        tables: &krxflow_dag::NoTables,
        env: &krxflow_dag::ProcessEnv,
    };
    let path = std::path::Path::new("dags/does_not_exist.yaml");
    let diags = krxflow_dag::load_dag_file(path, &ctx).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(
        (diags[0].line, diags[0].col, diags[0].code),
        (1, 1, DiagCode::Io)
    );
    assert!(
        diags[0]
            .to_string()
            .starts_with("dags/does_not_exist.yaml:1:1: error[io]: ")
    );
}

#[test]
fn substituted_param_of_the_wrong_type_points_at_its_key() {
    let yaml = "\
dag: x
params: { h: abc }
tasks:
  i: { op: ingest.ohlcv, with: { source: s, path: p }, outputs: { bars: b } }
  c:
    op: forecast.chronos
    inputs: { bars: b }
    with:
      model: m
      horizons: \"${params.h}\"
";
    let diags = load_str(yaml).unwrap_err();
    let d = one(&diags, DiagCode::InvalidParam);
    assert_diag(
        &d,
        10,
        Some(7),
        &["task `c`", "param `horizons`", "sequence"],
    );
}

#[test]
fn after_as_a_single_unknown_string_is_reported_at_it() {
    let diags = load_str("dag: x\ntasks:\n  t: { op: util.source, after: nobody }\n").unwrap_err();
    let d = one(&diags, DiagCode::UnknownTask);
    assert_diag(&d, 3, Some(32), &["`nobody`"]);
}

#[test]
fn unknown_calendar_is_reported_at_its_line_with_the_known_names() {
    let diags = errors("unknown_calendar.yaml");
    assert_eq!(diags.len(), 1, "{}", krxflow_dag::render(&diags));
    let d = one(&diags, DiagCode::InvalidField);
    assert_diag(&d, 4, Some(13), &["`nyse`", "krx, weekdays"]);
}

#[test]
fn table_names_that_leave_the_lake_are_refused_at_validate() {
    let diags = errors("bad_table_names.yaml");
    let bad: Vec<_> = diags
        .iter()
        .filter(|d| d.code == DiagCode::BadTableName)
        .collect();
    assert_eq!(bad.len(), 2, "{}", krxflow_dag::render(&diags));
    assert_diag(
        bad.iter().find(|d| d.line == 6).unwrap(),
        6,
        Some(22),
        &["task `ingest`", "`../../outside`", "`..`"],
    );
    assert_diag(
        bad.iter().find(|d| d.line == 9).unwrap(),
        9,
        Some(21),
        &["task `returns`", "`/etc/passwd`", "absolute path"],
    );
}

#[test]
fn a_param_may_use_another_param_that_reads_the_environment() {
    // `data` reads KRXFLOW_DATA (set to /srv/krx by the test environment); `panel` builds on
    // `data`, and the task on `panel`: every layer is substituted, none left as raw text.
    let dag = load_str(
        "dag: x\nparams:\n  panel: \"${params.data}/p.csv.gz\"\n  data: \"${KRXFLOW_DATA:-../d}\"\n  \
         lit: \"$${params.data}\"\ntasks:\n  i: { op: ingest.ohlcv, with: { source: \"${params.lit}\", \
         path: \"${params.panel}\" }, outputs: { bars: b } }\n",
    )
    .unwrap_or_else(|d| panic!("{}", krxflow_dag::render(&d)));
    let with = &dag.task("i").unwrap().spec.with;
    assert_eq!(with["path"], "/srv/krx/p.csv.gz");
    // An escaped `$${` stays literal text however many rounds run.
    assert_eq!(with["source"], "${params.data}");
}

#[test]
fn params_that_refer_to_each_other_in_a_cycle_are_an_error() {
    let diags = load_str(
        "dag: x\nparams:\n  a: \"${params.b}\"\n  b: \"x${params.a}\"\ntasks:\n  t: { op: util.source }\n",
    )
    .unwrap_err();
    let d = one(&diags, DiagCode::InvalidField);
    assert!(d.message.contains("cycle"), "{}", d.message);
}

#[test]
fn a_param_outside_its_choices_is_an_error_at_its_line_naming_the_variable() {
    let yaml = |linear: &str| {
        format!(
            "dag: x\nparams:\n  linear: \"${{KRXFLOW_LINEAR:-{linear}}}\"\n  universe: synthetic\n\
             choices:\n  linear: [on, off]\n  universe: [synthetic, krx30]\ntasks:\n  \
             t: {{ op: util.source }}\n"
        )
    };
    let diags = load_str(&yaml("On")).unwrap_err();
    let d = one(&diags, DiagCode::InvalidField);
    assert_diag(
        &d,
        3,
        Some(11),
        &[
            "`params.linear` is `On` (from KRXFLOW_LINEAR)",
            "expected one of on, off",
            "`choices.linear`",
        ],
    );
    for ok in ["on", "off"] {
        load_str(&yaml(ok)).unwrap_or_else(|d| panic!("{ok}: {}", krxflow_dag::render(&d)));
    }
}

#[test]
fn choices_must_name_a_param_and_list_its_values() {
    let diags = load_str(
        "dag: x\nparams:\n  linear: on\nchoices:\n  linear: on\n  lineer: [on, off]\ntasks:\n  \
         t: { op: util.source }\n",
    )
    .unwrap_err();
    let shown = krxflow_dag::render(&diags);
    assert_eq!(diags.len(), 2, "{shown}");
    assert!(
        diags.iter().any(|d| d.line == 5
            && d.message
                .contains("`choices.linear` must be a non-empty list of values")),
        "{shown}"
    );
    assert!(
        diags.iter().any(|d| d.line == 6
            && d.message
                .contains("`choices.lineer` names no param: `params` has no `lineer`")),
        "{shown}"
    );
}
