//! The report as CSV, section by section, safe to open in a spreadsheet.

use super::{Report, tables};

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

/// The report as CSV for a spreadsheet or an accounting import: each section under a row with
/// its title, then a header row of its columns, then its rows, a blank row between sections;
/// money in whole currency units as plain numbers (`1234.50`), the currency in the header.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::new();
    for (i, t) in tables(report).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&csv_cell(t.title));
        out.push('\n');
        let header: Vec<String> = t.columns.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for row in &t.rows {
            let cells: Vec<String> = row.iter().map(|c| csv_cell(&c.for_import())).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
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
