//! A `checks:` query is one read-only `SELECT` (or `WITH ... SELECT`), told at load time with
//! the parser DataFusion runs it with; `{ds}` stands for the partition's date.

use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// `Ok` when `sql` (with `{ds}` as a date) is exactly one query; else why not.
pub(crate) fn is_one_query(sql: &str) -> Result<(), String> {
    if sql.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let probe = sql.replace("{ds}", "DATE '2000-01-03'");
    let statements =
        Parser::parse_sql(&GenericDialect {}, &probe).map_err(|e| format!("not valid SQL: {e}"))?;
    match statements.as_slice() {
        [Statement::Query(_)] => Ok(()),
        [_] => {
            Err("must be a query (SELECT or WITH ... SELECT) whose rows are the failures".into())
        }
        many => Err(format!(
            "must be one query, found {} statements",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_one_select_with_ds_as_a_date() {
        assert!(is_one_query("SELECT code FROM predictions WHERE base_date = {ds}").is_ok());
        assert!(is_one_query("WITH x AS (SELECT 1 AS a) SELECT a FROM x WHERE a > 1").is_ok());
        assert_eq!(is_one_query("  ").unwrap_err(), "the query is empty");
        assert!(
            is_one_query("SELEC code")
                .unwrap_err()
                .starts_with("not valid SQL")
        );
        assert!(
            is_one_query("DELETE FROM predictions")
                .unwrap_err()
                .starts_with("must be a query")
        );
        assert_eq!(
            is_one_query("SELECT 1; SELECT 2").unwrap_err(),
            "must be one query, found 2 statements"
        );
    }
}
