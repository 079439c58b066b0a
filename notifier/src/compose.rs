//! What the messages say: a plain-text body and an HTML body of the same content, composed from
//! what the order and its raffle hold. Pure: nothing here reads or writes anything.

use chrono::{DateTime, Utc};
use schemas::text::html as escape;
use uuid::Uuid;

/// What a message about one order needs to know about it.
#[derive(Debug, Clone)]
pub struct OrderFacts {
    pub order_id: Uuid,
    pub raffle_id: Uuid,
    pub organization: String,
    pub license_number: Option<String>,
    pub raffle: String,
    pub draw_time: DateTime<Utc>,
    pub claim_by: DateTime<Utc>,
    pub package: Option<String>,
    pub ticket_count: i32,
    pub amount_minor: i64,
    pub currency: String,
    pub validation_number: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
}

/// A composed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A win, as a message tells it.
#[derive(Debug, Clone)]
pub struct Win {
    pub number: i64,
    pub prize: String,
    pub value_minor: i64,
}

/// What the message is about.
#[derive(Debug, Clone)]
pub enum About<'a> {
    /// The draw numbers the allocator issued.
    Issued { numbers: &'a [i64] },
    /// A copy of the numbers the order holds now, asked for again.
    Copy { numbers: &'a [i64] },
    /// The payment could not become tickets; it is refunded.
    Rejected { reason: &'a str },
    /// These tickets no longer take part; the money goes back.
    Voided { numbers: &'a [i64], reason: &'a str },
    /// Money given back without tickets taken away (a partial refund).
    Refunded { amount_minor: i64 },
    /// These numbers won.
    Won { wins: &'a [Win] },
}

/// Draw numbers as a person reads them: runs written as ranges (`101–105, 110`).
pub fn numbers_for_people(numbers: &[i64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        runs.push(if end == start {
            start.to_string()
        } else if end == start + 1 {
            format!("{start}, {end}")
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    runs.join(", ")
}

fn money(minor: i64, currency: &str) -> String {
    format!("{} {currency}", schemas::amount_for_people(minor))
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The message about `facts` that `about` says; `base_url` is where buyers reach the rules,
/// `order_link` the signed link to the order's page, if any.
pub fn letter(
    facts: &OrderFacts,
    about: &About<'_>,
    base_url: &str,
    order_link: Option<&str>,
) -> Letter {
    let greeting = match facts.customer_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => format!("Dear {name},"),
        _ => "Hello,".to_owned(),
    };
    let package = facts.package.as_deref().unwrap_or("tickets");
    let paid = money(facts.amount_minor, &facts.currency);
    // (subject, the paragraphs that differ, the numbers shown as the message's core)
    let (subject, lines, numbers): (String, Vec<String>, Option<String>) = match about {
        About::Issued { numbers } | About::Copy { numbers } => (
            format!(
                "{} draw numbers for {}",
                if matches!(about, About::Copy { .. }) { "A copy of your" } else { "Your" },
                facts.raffle
            ),
            vec![
                format!(
                    "Your payment of {paid} for {package} ({} ticket{}) is confirmed. These are your draw numbers:",
                    facts.ticket_count,
                    if facts.ticket_count == 1 { "" } else { "s" }
                ),
            ],
            Some(numbers_for_people(numbers)),
        ),
        About::Rejected { reason } => (
            format!("Your payment for {} is being refunded", facts.raffle),
            vec![
                format!("Your payment of {paid} for {package} could not be turned into tickets: {reason}."),
                "It is refunded to the card you paid with; no tickets were issued for it.".to_owned(),
            ],
            None,
        ),
        About::Voided { numbers, reason } => (
            format!("Your tickets for {} were voided", facts.raffle),
            vec![
                format!("These draw numbers no longer take part in the draw ({reason}):"),
            ],
            Some(numbers_for_people(numbers)),
        ),
        About::Refunded { amount_minor } => (
            format!("A refund on your order for {}", facts.raffle),
            vec![
                format!(
                    "{} of your payment of {paid} is refunded to the card you paid with.",
                    money(*amount_minor, &facts.currency)
                ),
                "Your draw numbers stay in the draw.".to_owned(),
            ],
            None,
        ),
        About::Won { wins } => (
            format!("You won in {}", facts.raffle),
            wins.iter()
                .map(|w| {
                    format!(
                        "Your number {} won {} ({}).",
                        w.number,
                        w.prize,
                        money(w.value_minor, &facts.currency)
                    )
                })
                .chain([format!(
                    "Claim your prize by {} with your validation number and the check code on your receipt.",
                    when(facts.claim_by)
                )])
                .collect(),
            None,
        ),
    };
    let rules = format!("{base_url}/v1/raffles/{}/rules", facts.raffle_id);
    let licence = facts
        .license_number
        .as_deref()
        .map(|l| format!("licence {l}"))
        .unwrap_or_else(|| "licence number on the rules page".to_owned());
    let footer = [
        format!("Validation number: {}", facts.validation_number),
        format!(
            "The draw: {}. Prizes must be claimed by {}.",
            when(facts.draw_time),
            when(facts.claim_by)
        ),
        format!("Rules: {rules}"),
    ];
    let keep = "Keep the check code from your receipt to yourself: a prize is paid only with it.";

    let mut text = format!("{greeting}\n\n");
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    if let Some(n) = &numbers {
        text.push_str(&format!("\n    {n}\n"));
    }
    text.push('\n');
    for l in &footer {
        text.push_str(l);
        text.push('\n');
    }
    if let Some(link) = order_link {
        text.push_str(&format!("Your order, any time: {link}\n"));
    }
    text.push_str(&format!(
        "{keep}\n\n{} — {} ({licence})\nOrder {}\n",
        facts.organization, facts.raffle, facts.order_id
    ));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;max-width:36em\">\
         <p>{}</p>",
        escape(&greeting)
    );
    for l in &lines {
        html.push_str(&format!("<p>{}</p>", escape(l)));
    }
    if let Some(n) = &numbers {
        html.push_str(&format!(
            "<p style=\"font-size:1.4em;font-weight:bold\">{}</p>",
            escape(n)
        ));
    }
    html.push_str(&format!(
        "<p>Validation number: <b>{}</b><br>The draw: {}. Prizes must be claimed by {}.<br>\
         <a href=\"{}\">The raffle's rules</a></p>",
        escape(&facts.validation_number),
        escape(&when(facts.draw_time)),
        escape(&when(facts.claim_by)),
        escape(&rules)
    ));
    if let Some(link) = order_link {
        html.push_str(&format!(
            "<p><a href=\"{}\">Your order, any time</a></p>",
            escape(link)
        ));
    }
    html.push_str(&format!(
        "<p>{}</p><p style=\"color:#555\">{} — {} ({})<br>Order {}</p></body></html>",
        escape(keep),
        escape(&facts.organization),
        escape(&facts.raffle),
        escape(&licence),
        facts.order_id
    ));
    Letter {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts() -> OrderFacts {
        OrderFacts {
            order_id: Uuid::nil(),
            raffle_id: Uuid::nil(),
            organization: "Hospital <Foundation>".into(),
            license_number: Some("M-123".into()),
            raffle: "Spring 50/50".into(),
            draw_time: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            claim_by: DateTime::from_timestamp(1_815_000_000, 0).unwrap_or_default(),
            package: Some("Value Pack".into()),
            ticket_count: 5,
            amount_minor: 2_000,
            currency: "USD".into(),
            validation_number: "V-1".into(),
            customer_name: Some("Ann".into()),
            customer_email: Some("ann@example.org".into()),
        }
    }

    #[test]
    fn numbers_read_as_runs() {
        assert_eq!(
            numbers_for_people(&[5, 1, 2, 3, 9, 10, 12]),
            "1–3, 5, 9, 10, 12"
        );
        assert_eq!(numbers_for_people(&[]), "");
    }

    #[test]
    fn the_confirmation_carries_what_the_receipt_carries() {
        let letter = letter(
            &facts(),
            &About::Issued {
                numbers: &[101, 102, 103, 104, 105],
            },
            "https://tickets.example.org",
            Some("https://tickets.example.org/v1/orders/x?expires=1&signature=ab"),
        );
        assert_eq!(letter.subject, "Your draw numbers for Spring 50/50");
        for part in [&letter.text, &letter.html] {
            assert!(part.contains("101–105"), "{part}");
            assert!(part.contains("V-1"));
            assert!(part.contains("M-123"));
            assert!(part.contains("https://tickets.example.org/v1/raffles/"));
            assert!(part.contains("claimed by"));
            assert!(part.contains("20.00 USD"));
        }
        assert!(
            letter.html.contains("Hospital &lt;Foundation&gt;"),
            "names are escaped in HTML"
        );
        assert!(!letter.html.contains("<Foundation>"));
    }

    #[test]
    fn a_partial_refund_keeps_the_numbers_in_the_draw() {
        let letter = letter(
            &facts(),
            &About::Refunded { amount_minor: 500 },
            "https://x",
            None,
        );
        assert_eq!(letter.subject, "A refund on your order for Spring 50/50");
        assert!(
            letter
                .text
                .contains("5.00 USD of your payment of 20.00 USD is refunded")
        );
        assert!(letter.text.contains("stay in the draw"));
    }

    proptest! {
        /// Every number of the order is in the message, however they fall into runs.
        #[test]
        fn runs_keep_every_number(mut numbers in proptest::collection::vec(1i64..500, 1..60)) {
            let written = numbers_for_people(&numbers);
            let mut read = Vec::new();
            for part in written.split(", ") {
                match part.split_once('–') {
                    Some((a, b)) => {
                        let (a, b): (i64, i64) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                        read.extend(a..=b);
                    }
                    None => read.push(part.parse().unwrap_or(0)),
                }
            }
            numbers.sort_unstable();
            numbers.dedup();
            prop_assert_eq!(read, numbers);
        }
    }
}
