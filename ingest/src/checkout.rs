//! Checkout: a pending order for one package, with its tickets held for the payment, refused
//! unless the sale could be made now.
//!
//! Every checkout of a raffle updates one row (`sales.capacity_holds`), which a single
//! statement per checkout would make the ceiling of the whole sale (about 3,000 updates/s
//! here, less with the order's own insert and commit under the row's lock). So checkouts are
//! decided in batches, the way [`crate::lookup`] batches webhooks' look-ups: a checkout
//! waits in a queue while earlier batches are in flight, and the next free transaction takes
//! everything queued. One transaction locks the raffles' hold rows (the allocator changes a
//! raffle's sold count only under the same lock, so the count it then reads stays current),
//! decides each checkout in the order it came against the raffle, package and regulations,
//! takes the holds and writes the orders, and commits once. At low load a checkout goes
//! alone, at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use platform::db::{DbError, DbTarget};
use platform::problem::Problem;
use rand::Rng;
use schemas::Money;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use warp::http::StatusCode;

use crate::{IngestState, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutInput {
    raffle_id: Uuid,
    package_id: Uuid,
    customer: Option<Customer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Customer {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

/// `VAL-` and twelve characters a person can read back over the phone.
pub fn online_validation_number() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEF";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("VAL-{code}")
}

/// Sold out, or every ticket left is held for a payment in progress (which may yet fail).
fn sold_out(left: i64) -> Problem {
    Problem::conflict(
        "sold-out",
        if left > 0 {
            format!("{left} tickets are left, fewer than this package holds")
        } else {
            "every ticket is sold or held for a payment in progress; held tickets come back when a payment fails or its time runs out".to_owned()
        },
    )
}

/// A check code from the operating system's CSPRNG (rand's thread generator is seeded from it).
fn new_check_code() -> schemas::CheckCode {
    let mut bytes = [0u8; 8];
    rand::rng().fill(&mut bytes);
    schemas::CheckCode::from_random(bytes)
}

pub async fn create(state: &IngestState, body: &[u8]) -> Result<Reply, Problem> {
    let input: CheckoutInput = platform::body::parse(body)?;
    let given = input.customer.unwrap_or(Customer {
        name: None,
        email: None,
        phone: None,
    });
    let customer = crate::customer(
        "customer",
        given.name.as_deref(),
        given.email.as_deref(),
        given.phone.as_deref(),
    )
    .map_err(|(field, why)| Problem::invalid(&field, why))?;
    let validation_number = online_validation_number();
    let check_code = new_check_code();
    let wanted = Wanted {
        // Time-ordered (v7): orders are paid roughly in the order they were created, so the
        // order's key, and the tickets' index by order, grow at their right edge.
        order_id: Uuid::now_v7(),
        raffle_id: input.raffle_id,
        package_id: input.package_id,
        check_code_hash: check_code
            .hash(input.raffle_id, &validation_number)
            .to_vec(),
        validation_number,
        customer,
    };
    let order = state.checkouts.take(wanted).await?;
    tracing::info!(raffle = %input.raffle_id, order = %order.order_id, tickets = order.ticket_count,
                   amount = %order.amount, "checkout");
    Ok((
        StatusCode::CREATED,
        // The check code is the buyer's alone: said once, here (and in the confirmation
        // e-mail), stored only as its hash.
        json!({"order_id": order.order_id, "amount_minor": order.amount.amount_minor(), "currency": order.amount.currency(),
               "ticket_count": order.ticket_count, "validation_number": order.validation_number,
               "check_code": check_code.display(), "payment_status": "pending",
               "held_for_minutes": state.config.hold_minutes}),
    ))
}

/// A checkout as the buyer asked for it, its input checked.
struct Wanted {
    order_id: Uuid,
    raffle_id: Uuid,
    package_id: Uuid,
    validation_number: String,
    check_code_hash: Vec<u8>,
    customer: schemas::Customer,
}

/// The order a checkout created, its tickets held.
pub struct Taken {
    pub order_id: Uuid,
    pub validation_number: String,
    pub ticket_count: i32,
    pub amount: Money,
}

struct Request {
    wanted: Wanted,
    reply: oneshot::Sender<Result<Taken, Problem>>,
}

/// Transactions in flight at once, each on its own connection. Batches of one raffle queue
/// on its hold row; two keep one committing while the next decides.
const TRANSACTIONS_IN_FLIGHT: usize = 2;
/// Checkouts one transaction decides at most.
const BATCH_MAX: usize = 256;
/// Checkouts waiting for a transaction; beyond this a checkout waits to be queued.
const QUEUE_MAX: usize = 4096;
/// How long a raffle's regulations, as read, are used before they are read again: a rule
/// change reaches checkout within this. The raffle's state, sales window, package and
/// capacity are read in every batch.
pub const RULES_FRESH_FOR: Duration = Duration::from_secs(2);

type Rules = Arc<catalog::regulations::Regulations>;

/// What a batch needs besides its checkouts.
struct Desk {
    pool: Pool,
    order_tickets_max: i32,
    hold_minutes: i32,
    rules: std::sync::Mutex<HashMap<Uuid, (Instant, Rules)>>,
}

/// Decides checkouts in batches (see the module's documentation).
pub struct Checkouts {
    queue: mpsc::Sender<Request>,
}

impl Checkouts {
    /// Starts the batching task on the current runtime, with connections of its own; it ends
    /// when the checkouts are dropped.
    pub fn start(db: &DbTarget, config: &crate::IngestConfig) -> Result<Self, DbError> {
        // Generic plans: the arrays differ in length every time (see crate::lookup).
        let pool = db.pool_with_generic_plans(TRANSACTIONS_IN_FLIGHT, "raffle-ingest-checkout")?;
        let desk = Arc::new(Desk {
            pool,
            order_tickets_max: config.order_tickets_max,
            hold_minutes: config.hold_minutes,
            rules: std::sync::Mutex::new(HashMap::new()),
        });
        let (queue, requests) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(platform::batching::in_batches(
            requests,
            TRANSACTIONS_IN_FLIGHT,
            BATCH_MAX,
            move |batch| {
                let desk = desk.clone();
                async move { answer(&desk, batch).await }
            },
        ));
        Ok(Self { queue })
    }

    async fn take(&self, wanted: Wanted) -> Result<Taken, Problem> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Problem::unavailable("checkout stopped; retry");
        self.queue
            .send(Request { wanted, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Decides a batch in one transaction; if the transaction fails, each checkout of a batch of
/// several is tried alone, so that one cannot fail the others.
async fn answer(desk: &Desk, batch: Vec<Request>) {
    let wanted: Vec<&Wanted> = batch.iter().map(|r| &r.wanted).collect();
    match decide(desk, &wanted).await {
        Ok(decisions) => {
            for (r, decision) in batch.into_iter().zip(decisions) {
                let _ = r.reply.send(decision);
            }
        }
        Err(problem) if batch.len() == 1 => {
            let _ = batch.into_iter().next().map(|r| r.reply.send(Err(problem)));
        }
        Err(problem) => {
            tracing::warn!(checkouts = batch.len(), detail = %problem.detail, "a checkout batch failed; deciding each alone");
            for r in batch {
                let decision = decide(desk, &[&r.wanted]).await.and_then(|mut d| {
                    d.pop().unwrap_or_else(|| {
                        Err(Problem::unavailable("checkout decided nothing; retry"))
                    })
                });
                let _ = r.reply.send(decision);
            }
        }
    }
}

struct RaffleNow {
    state: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: i64,
    sold: i64,
    /// Held before this batch, plus what this batch has taken so far.
    held: i64,
    taken: i64,
}

struct PackageNow {
    raffle_id: Uuid,
    count: i32,
    price: i64,
    currency: String,
    active: bool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The regulations in force for `raffle`, as read within [`RULES_FRESH_FOR`].
async fn rules(
    desk: &Desk,
    client: &impl tokio_postgres::GenericClient,
    raffle: Uuid,
    now: DateTime<Utc>,
) -> Result<Rules, Problem> {
    let cached = desk.rules.lock().ok().and_then(|c| {
        c.get(&raffle)
            .filter(|(at, _)| at.elapsed() < RULES_FRESH_FOR)
            .map(|(_, r)| r.clone())
    });
    if let Some(rules) = cached {
        return Ok(rules);
    }
    let rules = Arc::new(catalog::regulations::for_raffle(client, raffle, now).await?);
    if let Ok(mut cache) = desk.rules.lock() {
        cache.insert(raffle, (Instant::now(), rules.clone()));
    }
    Ok(rules)
}

/// One transaction: every checkout's answer, in order; `Err` when the transaction failed and
/// nothing was written.
async fn decide(desk: &Desk, batch: &[&Wanted]) -> Result<Vec<Result<Taken, Problem>>, Problem> {
    let mut client = platform::problem::pooled(&desk.pool).await?;
    let tx = client.transaction().await?;
    let now = Utc::now();
    let raffle_ids = unique(batch.iter().map(|w| w.raffle_id));
    let package_ids = unique(batch.iter().map(|w| w.package_id));
    // The hold rows first, locked to the commit: the allocator changes a raffle's sold count
    // only under its hold row's lock, so the count read next is current until this commits.
    // A raffle's hold row exists from its first checkout or sale on.
    let held: HashMap<Uuid, i64> = sales::holds::lock_for_checkout(&tx, &raffle_ids).await?;
    let raffles_now = tx
        .prepare_cached(
            "SELECT id, state, sales_start_time, sales_end_time, max_tickets, total_sold
               FROM catalog.raffle_events WHERE id = ANY($1)",
        )
        .await?;
    let mut raffles: HashMap<Uuid, RaffleNow> = HashMap::new();
    for row in tx.query(&raffles_now, &[&raffle_ids]).await? {
        let id: Uuid = row.get(0);
        // No hold row: the raffle did not exist a moment ago; answered as unknown.
        let Some(held) = held.get(&id).copied() else {
            continue;
        };
        raffles.insert(
            id,
            RaffleNow {
                state: row.get(1),
                start: row.get(2),
                end: row.get(3),
                max: row.get(4),
                sold: row.get(5),
                held,
                taken: 0,
            },
        );
    }
    let known: Vec<Uuid> = raffle_ids
        .iter()
        .copied()
        .filter(|r| raffles.contains_key(r))
        .collect();
    let packages_now = tx
        .prepare_cached(
            "SELECT id, raffle_id, ticket_count, price_minor, currency, is_active, active_from, active_to
               FROM catalog.ticket_packages WHERE id = ANY($1)",
        )
        .await?;
    let mut packages: HashMap<Uuid, PackageNow> = HashMap::new();
    for row in tx.query(&packages_now, &[&package_ids]).await? {
        packages.insert(
            row.get(0),
            PackageNow {
                raffle_id: row.get(1),
                count: row.get(2),
                price: row.get(3),
                currency: row.get(4),
                active: row.get(5),
                from: row.get(6),
                to: row.get(7),
            },
        );
    }
    let mut rules_of: HashMap<Uuid, Result<Rules, Problem>> = HashMap::new();
    for id in &known {
        rules_of.insert(*id, rules(desk, &*tx, *id, now).await);
    }

    let mut decisions = Vec::with_capacity(batch.len());
    for w in batch {
        let decision = match (raffles.get_mut(&w.raffle_id), packages.get(&w.package_id)) {
            (Some(raffle), Some(package)) if package.raffle_id == w.raffle_id => {
                let rules = rules_of.get(&w.raffle_id).cloned().unwrap_or_else(|| {
                    Err(Problem::unavailable(
                        "the raffle's rules were not read; retry",
                    ))
                });
                judge(desk, w, raffle, package, rules, now)
            }
            _ => Err(Problem::invalid(
                "package_id",
                format!(
                    "package {} is not one of raffle {}'s",
                    w.package_id, w.raffle_id
                ),
            )),
        };
        decisions.push(decision);
    }

    let taken: Vec<(&Wanted, &Taken)> = batch
        .iter()
        .zip(&decisions)
        .filter_map(|(w, d)| d.as_ref().ok().map(|t| (*w, t)))
        .collect();
    if !taken.is_empty() {
        let orders: Vec<sales::orders::NewPendingOrder<'_>> = taken
            .iter()
            .map(|(w, t)| sales::orders::NewPendingOrder {
                id: w.order_id,
                raffle_id: w.raffle_id,
                package_id: w.package_id,
                validation_number: &t.validation_number,
                ticket_count: t.ticket_count,
                amount_minor: t.amount.amount_minor(),
                currency: t.amount.currency_code(),
                customer: &w.customer,
                check_code_hash: &w.check_code_hash,
            })
            .collect();
        sales::orders::create_pending(&tx, &orders, desk.hold_minutes)
            .await
            .map_err(|e| platform::problem::from_db("creating the orders", &e))?;
        let (held_raffles, held_counts): (Vec<Uuid>, Vec<i64>) = raffles
            .iter()
            .filter(|(_, r)| r.taken > 0)
            .map(|(id, r)| (*id, r.taken))
            .unzip();
        sales::holds::add(&tx, &held_raffles, &held_counts).await?;
    }
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("committing the checkouts", &e))?;
    Ok(decisions)
}

/// One checkout against its raffle and package as they are now; takes its hold in `raffle`.
fn judge(
    desk: &Desk,
    w: &Wanted,
    raffle: &mut RaffleNow,
    package: &PackageNow,
    rules: Result<Rules, Problem>,
    now: DateTime<Utc>,
) -> Result<Taken, Problem> {
    if raffle.state != "active" {
        return Err(Problem::conflict(
            "raffle-not-selling",
            format!("raffle {} is {}", w.raffle_id, raffle.state),
        ));
    }
    if now < raffle.start || now >= raffle.end {
        return Err(Problem::conflict(
            "outside-sales-window",
            format!("sales run from {} to {}", raffle.start, raffle.end),
        ));
    }
    if !package.active
        || package.from.is_some_and(|f| now < f)
        || package.to.is_some_and(|t| now >= t)
    {
        return Err(Problem::conflict(
            "package-not-on-sale",
            format!("package {} is not on sale now", w.package_id),
        )
        .with_field("package_id"));
    }
    if package.count > desk.order_tickets_max {
        return Err(Problem::conflict(
            "order-too-large",
            format!(
                "an order holds at most {} tickets; this package has {}",
                desk.order_tickets_max, package.count
            ),
        ));
    }
    let rules = rules?;
    let price = catalog::regulations::money("package_id", package.price, &package.currency)?;
    rules.check_package_price("package_id", price, package.count)?;
    if !rules.sales_methods().online {
        return Err(Problem::conflict(
            "regulation",
            "online sales are not allowed in this raffle's jurisdiction",
        ));
    }
    let committed = raffle.sold + raffle.held + raffle.taken;
    let count = i64::from(package.count);
    if committed + count > raffle.max {
        return Err(sold_out(raffle.max - committed));
    }
    raffle.taken += count;
    Ok(Taken {
        order_id: w.order_id,
        validation_number: w.validation_number.clone(),
        ticket_count: package.count,
        amount: price,
    })
}
