//! The raffle as the public sees it, as JSON: `GET /v1/raffles/{id}` — its rules (the same as
//! `…/rules`: organiser, licence, sales window, packages and prices, prizes, claim-by date),
//! its state and tickets sold; once sealed, the seal's evidence (ledger head hash, ticket-set
//! digest, the draw seed's commitment, gross receipts and the prizes as valued); once drawn,
//! the revealed seed, the winning numbers and how anyone can re-check them. Nothing of a buyer
//! is in it, and the seed is never shown before the draw completed. Read-only.

use platform::problem::Problem;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;

use crate::IngestState;

/// How anyone re-derives the winners from what this page publishes.
const HOW_TO_CHECK: &str = "the seed's SHA-256 must equal the commitment published at the seal; with the seed and the sealed ticket set, `raffle draw verify --raffle <id>` or the independent scripts/draw_reference.py selects the same numbers";

pub async fn raffle(state: &IngestState, raffle: &str) -> Result<(StatusCode, Value), Problem> {
    let (_, rules) = crate::rsu::rules(state, raffle).await?;
    let raffle: Uuid = raffle
        .parse()
        .map_err(|_| Problem::invalid("raffle_id", "must be a UUID"))?;
    let client = platform::problem::pooled(&state.pool).await?;
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
    Ok((
        StatusCode::OK,
        json!({
            "raffle_id": raffle,
            "state": row.get::<_, String>(0),
            "tickets_sold": row.get::<_, i64>(1),
            "tickets_at_most": row.get::<_, i64>(2),
            "rules": rules,
            "seal": row.get::<_, Option<Value>>(3),
            "draw": draw,
        }),
    ))
}
