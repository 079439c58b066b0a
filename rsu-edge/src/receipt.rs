//! The receipt a sale prints, with everything the regulations require on a ticket, and its
//! reprint.

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::{EdgeError, Result, store};

/// What a sale prints: everything the regulations require on a ticket.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub local_id: String,
    pub rsu: String,
    pub organization: String,
    pub license_number: String,
    pub raffle: String,
    pub raffle_id: String,
    pub draw_time: String,
    pub sold_at: String,
    pub package: String,
    pub numbers: (i64, i64),
    pub price_minor: i64,
    pub currency: String,
    pub validation_number: String,
    /// The buyer's secret for a prize claim; none on sales made before check codes existed.
    pub check_code: Option<String>,
    pub rules_url: String,
    pub claim_by: String,
    pub reprint: bool,
    pub voided: bool,
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reprint {
            writeln!(f, "*** REPRINT ***")?;
        }
        if self.voided {
            writeln!(f, "*** VOID ***")?;
        }
        writeln!(f, "{} — {}", self.organization, self.raffle)?;
        writeln!(f, "licence {}", self.license_number)?;
        writeln!(f, "raffle {}", self.raffle_id)?;
        writeln!(f, "draw {}", self.draw_time)?;
        writeln!(f, "sold {} by RSU {}", self.sold_at, self.rsu)?;
        writeln!(
            f,
            "{}: numbers {}..{} ({} tickets)",
            self.package,
            self.numbers.0,
            self.numbers.1,
            self.numbers.1 - self.numbers.0 + 1
        )?;
        writeln!(
            f,
            "price {}.{:02} {}",
            self.price_minor / 100,
            self.price_minor % 100,
            self.currency
        )?;
        writeln!(f, "validation {}", self.validation_number)?;
        if let Some(code) = &self.check_code {
            writeln!(
                f,
                "check code {code} (keep it secret: a prize is paid only with it)"
            )?;
        }
        writeln!(f, "rules {}", self.rules_url)?;
        write!(f, "claim prizes by {}", self.claim_by)
    }
}

pub(crate) fn receipt(conn: &Connection, local_id: &str, reprint: bool) -> Result<Receipt> {
    let device = store::device(conn)?;
    let (_, setup) = store::raffle(conn)?;
    let row = conn
        .query_row(
            "SELECT raffle_id, package_name, first_number, last_number, amount_minor, currency, validation_number,
                    created_at, voided, check_code
               FROM sales WHERE local_id = ?1",
            [local_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, bool>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| EdgeError::SaleRefused(format!("no sale {local_id} on this device")))?;
    let r = &setup["raffle"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    Ok(Receipt {
        local_id: local_id.to_owned(),
        rsu: s(&setup["rsu"]["name"]),
        organization: s(&r["organization"]),
        license_number: s(&r["license_number"]),
        raffle: s(&r["name"]),
        raffle_id: row.0,
        draw_time: s(&r["draw_time"]),
        sold_at: row.7,
        package: row.1,
        numbers: (row.2, row.3),
        price_minor: row.4,
        currency: row.5,
        validation_number: row.6,
        check_code: row.9,
        rules_url: format!("{}{}", device.server_url, s(&setup["rules_url"])),
        claim_by: s(&r["claim_by"]),
        reprint,
        voided: row.8,
    })
}
