//! The raffle as the public sees it, as JSON: `GET /v1/raffles/{id}` — its rules (the same as
//! `…/rules`: organiser, licence, sales window, packages and prices, prizes, claim-by date),
//! its state and tickets sold; once sealed, the seal's evidence (ledger head hash, ticket-set
//! digest, the draw seed's commitment, gross receipts and the prizes as valued); once drawn,
//! the revealed seed, the winning numbers and how anyone can re-check them. Nothing of a buyer
//! is in it, and the seed is never shown before the draw completed. Read-only.

use platform::problem::Problem;
use serde_json::{Value, json};
use uuid::Uuid;

use tokio_postgres::GenericClient;

/// How anyone re-derives the winners from what this page publishes.
const HOW_TO_CHECK: &str = "the seed's SHA-256 must equal the commitment published at the seal; with the seed and the sealed ticket set, `raffle draw verify --raffle <id>` or the independent scripts/draw_reference.py selects the same numbers";

/// The raffle's rules as the public reads them (the organiser, licence, sales window, packages
/// and prices, prizes, claim-by date); a draft raffle is not public.
pub async fn rules(client: &impl GenericClient, raffle: &str) -> Result<Value, Problem> {
    let raffle: Uuid = raffle
        .parse()
        .map_err(|_| Problem::invalid("raffle_id", "must be a UUID"))?;
    let row = client
        .query_opt(
            "SELECT jsonb_build_object('raffle', r.name, 'event_identifier', r.event_identifier, 'organization', o.name,
                    'license_number', o.license_number, 'currency', r.currency, 'sales_start_time', r.sales_start_time,
                    'sales_end_time', r.sales_end_time, 'draw_time', r.draw_time,
                    'claim_by', r.draw_time + make_interval(days => r.claim_period_days),
                    'guaranteed_minimum_minor', r.jackpot_seed_minor, 'revenue_basis', r.revenue_calculation_method,
                    'prizes', coalesce((SELECT jsonb_agg(jsonb_build_object('position', p.position, 'name', p.name,
                                'type', p.prize_type, 'percentage', p.percentage, 'value_minor', p.value_minor,
                                'winners', p.winner_count) ORDER BY p.position)
                           FROM catalog.prizes p WHERE p.raffle_id = r.id), '[]'),
                    'packages', coalesce((SELECT jsonb_agg(jsonb_build_object('name', k.name, 'tickets', k.ticket_count,
                                'price_minor', k.price_minor, 'active_from', k.active_from, 'active_to', k.active_to)
                                ORDER BY k.display_order)
                           FROM catalog.ticket_packages k WHERE k.raffle_id = r.id AND k.is_active), '[]'),
                    'draw', 'winners are drawn by a certified random number generator from every sold, non-voided number, after the books are sealed')
               FROM catalog.raffle_events r JOIN catalog.organizations o ON o.id = r.organization_id
              WHERE r.id = $1 AND r.state <> 'draft'",
            &[&raffle],
        )
        .await
        .map_err(|e| platform::problem::from_db("reading the rules", &e))?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle}")))?;
    Ok(row.get(0))
}

/// The raffle as the public sees it; see the module documentation.
pub async fn raffle(client: &impl GenericClient, raffle: &str) -> Result<Value, Problem> {
    let rules = rules(client, raffle).await?;
    let raffle: Uuid = raffle
        .parse()
        .map_err(|_| Problem::invalid("raffle_id", "must be a UUID"))?;
    let db = |e: tokio_postgres::Error| platform::problem::from_db("reading the raffle", &e);
    let row = client
        .query_one(
            "SELECT r.state, r.total_sold, r.max_tickets,
                    (SELECT jsonb_build_object('sealed_at', s.sealed_at, 'ledger_head_hash', encode(s.head_hash, 'hex'),
                            'ledger_entries', s.entries, 'ticket_set_digest', encode(s.ticket_set_digest, 'hex'),
                            'seed_commitment', encode(s.seed_commitment, 'hex'), 'tickets_eligible', s.tickets_eligible,
                            'gross_receipts_minor', s.gross_receipts_minor, 'prizes', s.prizes)
                       FROM ledger.seals s WHERE s.raffle_id = r.id),
                    (SELECT jsonb_build_object('completed_at', e.completed_at, 'method', e.method,
                            'seed', CASE WHEN e.rng_seed_wrapped THEN NULL ELSE encode(e.rng_seed, 'hex') END,
                            'winners', coalesce((SELECT jsonb_agg(jsonb_build_object('prize', p.name, 'position', d.position,
                                    'winner', d.winner_index, 'number', d.winning_number, 'value_minor', d.prize_value_at_draw_minor)
                                    ORDER BY d.position, d.winner_index)
                                FROM draw.draw_results d JOIN catalog.prizes p ON p.id = d.prize_id
                               WHERE d.draw_execution_id = e.id), '[]'))
                       FROM draw.draw_executions e WHERE e.raffle_event_id = r.id AND e.state = 'completed')
               FROM catalog.raffle_events r WHERE r.id = $1",
            &[&raffle],
        )
        .await
        .map_err(db)?;
    let mut draw: Option<Value> = row.get(4);
    if let Some(d) = draw.as_mut() {
        d["how_to_check"] = json!(HOW_TO_CHECK);
    }
    Ok(json!({
            "raffle_id": raffle,
            "state": row.get::<_, String>(0),
            "tickets_sold": row.get::<_, i64>(1),
            "tickets_at_most": row.get::<_, i64>(2),
            "rules": rules,
            "seal": row.get::<_, Option<Value>>(3),
            "draw": draw,
    }))
}
