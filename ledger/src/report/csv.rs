//! The report as CSV: one row per figure, `section,item,field,value`, safe to open in a
//! spreadsheet.

use serde::Serialize;
use serde_json::Value;

use super::Report;

/// One CSV cell. A text that a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return: a seller's name `=HYPERLINK(...)`) is prefixed with
/// `'`, so it shows as the text it is; numbers, negative amounts included, stay numbers.
pub fn csv_cell(s: &str) -> String {
    let is_number = s.parse::<i64>().is_ok() || s.parse::<rust_decimal::Decimal>().is_ok();
    let formula = !is_number && s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if formula || s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A section as JSON, whose fields become the CSV's rows.
fn json(section: &impl Serialize) -> Value {
    // The report's own types, all of them plain data: serialising cannot fail.
    serde_json::to_value(section).unwrap_or(Value::Null)
}

/// The report as CSV: one row per figure, `section,item,field,value`.
pub fn to_csv(report: &Report) -> String {
    let cell = csv_cell;
    fn flat(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::from("section,item,field,value\n");
    let sections: [(&str, Value); 13] = [
        ("raffle", json(&report.raffle)),
        ("gross_by_source", json(&report.gross_by_source)),
        ("gross_by_package", json(&report.gross_by_package)),
        ("gross_by_rsu", json(&report.gross_by_rsu)),
        ("gross_by_seller", json(&report.gross_by_seller)),
        ("numbers_by_range", json(&report.numbers_by_range)),
        ("numbers_by_allocation", json(&report.numbers_by_allocation)),
        ("money_by_rsu", json(&report.money_by_rsu)),
        ("refunds", json(&report.refunds)),
        ("seal", json(&report.seal)),
        ("winners", json(&report.winners)),
        ("trial_balance", json(&report.trial_balance.accounts)),
        ("confirmation", json(&report.confirmation)),
    ];
    for (section, value) in &sections {
        let items: Vec<(String, &Value)> = match value {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            other => vec![(String::new(), other)],
        };
        for (item, v) in items {
            if let Value::Object(map) = v {
                for (k, x) in map {
                    out.push_str(&format!(
                        "{},{},{},{}\n",
                        cell(section),
                        cell(&item),
                        cell(k),
                        cell(&flat(x))
                    ));
                }
            }
        }
    }
    for check in &report.checks {
        out.push_str(&format!(
            "check,{},pass,{}\n",
            cell(&check.name),
            check.pass
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_shown_as_text() {
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for formula in ["+1+1", "-1+cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(formula).starts_with("\"'"), "{formula:?}");
        }
        assert_eq!(csv_cell("-2000"), "-2000");
        assert_eq!(csv_cell("-20.50"), "-20.50");
        assert_eq!(csv_cell("seller-1"), "seller-1");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
