//! The schema, created and migrated by sluice: one PostgreSQL schema per
//! installation, versioned in its `schema_version` table.
//!
//! [`migrate`] runs at every open (and as `sluice migrate`): under a
//! transaction-scoped advisory lock, so N runners starting at once migrate
//! once; each step in [`MIGRATIONS`] runs in that transaction with the version
//! bump, so a crash mid-migration leaves the previous version. A schema whose
//! version is newer than this build's is refused ([`StoreError::SchemaTooNew`]).
//!
//! Times are milliseconds since the epoch (`bigint`), as [`Timestamp`](crate::clock::Timestamp)
//! holds them; states are the `smallint`s of [`super::rows::state_code`].

use tokio_postgres::Client;

use super::error::db;
use crate::store::{StoreError, StoreResult};

/// The newest schema version this build writes.
pub(super) const VERSION: i32 = 8;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8];

/// Version 6: module garbage collection ([`super::upkeep`]'s prune).
///
/// - `modules.unused_since`: when upkeep first found the module
///   unreferenced (no handler's current module, no attempt's); `NULL` while
///   referenced. It goes at a pass `MODULE_GRACE` later, if still so.
///   Registering it sets the column back to `NULL` in the same row write
///   that stores it, which is what a concurrent collection's `DELETE`
///   re-checks under the row lock.
/// - `attempts_module`: "does an attempt record this module" is an index
///   probe, not a scan of the attempts.
const V6: &str = r#"
ALTER TABLE modules ADD COLUMN unused_since bigint;
CREATE INDEX attempts_module ON attempts (module_sha256) WHERE module_sha256 IS NOT NULL;
"#;

/// Version 7: each attempt names the lease it ran under and the runner that
/// held it, written by the lease statement with the attempt's start (`NULL`
/// on older attempts). Which runner ran an attempt, and whether the attempt
/// that settled a delivery held its last lease, are then facts of the
/// history, not guesses from timestamps (the multi-runner fault test checks
/// both; docs/crash-testing.md).
const V7: &str = r#"
ALTER TABLE attempts ADD COLUMN lease_token bigint, ADD COLUMN runner text;
"#;

/// Version 8: why the runner paused a handler whose configuration cannot
/// run (`Store::pause_unrunnable`); `NULL` when running or paused by a user.
const V8: &str = r#"
ALTER TABLE handlers ADD COLUMN paused_reason text;
"#;

/// Version 3: schedules. A schedule's record (spec, cursor, counts) is one
/// JSON document beside its revision, which a tick's advance checks under
/// the row's lock; occurrence records are numbered per schedule and go with
/// it.
const V3: &str = r#"
CREATE TABLE schedules (
    id text PRIMARY KEY,
    revision bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE TABLE schedule_occurrences (
    schedule_id text NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    n bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (schedule_id, n)
);
"#;

/// Version 4: each attempt's outbound HTTP requests (JSON array of
/// `EgressRecord`s; `NULL` when it made none, as every older attempt).
const V4: &str = r#"
ALTER TABLE attempts ADD COLUMN egress jsonb;
"#;

/// Version 5: throughput (docs/scale-out.md).
///
/// - The state counters are kept by statement-level triggers over
///   transition tables, so a statement that moves N deliveries (a batched
///   lease, a batched settle, a bulk enqueue) makes one counter change per
///   (handler, state) it touched instead of two per row (each of which also
///   left a dead counter row version behind).
/// - Each server backend counts in stripes of its own (stripe = its pid):
///   a counter row is only ever written by one connection, so transactions
///   never wait for each other on counters, and cannot deadlock on them
///   (with shared stripes, a lease locking "ready" then "leased" and a
///   settlement locking "leased" then, for its outbox, "ready" could).
///   Stripe 0 holds what backends that are gone counted, folded in by
///   [`super::upkeep`]'s prune.
/// - `deliveries_handler` goes: `deliveries_query_state` (handler, state,
///   id) serves every lookup by handler.
const V5: &str = r#"
DROP TRIGGER deliveries_count ON deliveries;
DROP FUNCTION count_delivery();
DROP INDEX deliveries_handler;
CREATE FUNCTION count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE my_stripe integer := pg_backend_pid();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO counters AS c (handler, state, stripe, n)
        SELECT handler, state, my_stripe, count(*) FROM new_rows
        GROUP BY handler, state ORDER BY handler, state
        ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO counters AS c (handler, state, stripe, n)
        SELECT handler, state, my_stripe, -count(*) FROM old_rows
        GROUP BY handler, state ORDER BY handler, state
        ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO counters AS c (handler, state, stripe, n)
        SELECT handler, state, my_stripe, sum(d) FROM (
            SELECT o.handler, o.state, -1 AS d FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.state <> n.state OR o.handler <> n.handler
            UNION ALL
            SELECT n.handler, n.state, 1 AS d FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.state <> n.state OR o.handler <> n.handler
        ) moved
        GROUP BY handler, state HAVING sum(d) <> 0 ORDER BY handler, state
        ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();
CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();
"#;

/// Version 2: the indexes of `query_deliveries` (the dashboard's lists and
/// search): deliveries by (handler, state) and by (handler, ordering key),
/// each ordered by delivery id (creation order), so a page is a range read.
const V2: &str = r#"
CREATE INDEX deliveries_query_state ON deliveries (handler, state, id);
CREATE INDEX deliveries_query_key ON deliveries (handler, ordering_key, id)
    WHERE ordering_key IS NOT NULL;
"#;

/// Version 1: every table of the queue.
///
/// - `deliveries` carries the state machine; partial indexes serve each
///   state's scan (ready by enqueue order per handler, due times, lease
///   expiries, blocked by key order, dead by death time), so no verb scans
///   the backlog.
/// - `counters` holds per-(handler, state) counts, kept by a trigger on
///   `deliveries` in the same transaction as the change (per statement, in
///   per-backend stripes, since version 5), striped by backend
///   so concurrent writers do not serialise on one row; stats and the depth
///   check sum the stripes.
/// - `key_heads` holds, per (handler, ordering key), the one delivery in
///   flight; its row lock serialises the key's enqueues and hand-overs.
/// - `idempotency` is the dedup window: its primary key makes a concurrent
///   duplicate wait for the original's commit.
const V1: &str = r#"
CREATE TABLE topics (name text PRIMARY KEY);
CREATE TABLE modules (sha256 text PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE handlers (
    name text PRIMARY KEY,
    topic text NOT NULL,
    module_sha256 text NOT NULL REFERENCES modules (sha256),
    policy jsonb NOT NULL,
    paused boolean NOT NULL,
    version bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX handlers_topic ON handlers (topic);
CREATE TABLE messages (
    id uuid PRIMARY KEY,
    topic text NOT NULL,
    payload bytea NOT NULL,
    ordering_key text,
    idempotency_key text NOT NULL,
    headers jsonb NOT NULL,
    enqueued_at bigint NOT NULL,
    enqueued_at_micros bigint NOT NULL,
    not_before bigint
);
CREATE INDEX messages_topic_time ON messages (topic, enqueued_at, id);
CREATE INDEX messages_time ON messages (enqueued_at, id);
CREATE TABLE idempotency (
    topic text NOT NULL,
    key text NOT NULL,
    message_id uuid NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (topic, key)
);
CREATE INDEX idempotency_at ON idempotency (at);
CREATE SEQUENCE delivery_seq;
CREATE SEQUENCE lease_tokens;
CREATE TABLE deliveries (
    id uuid PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    handler text NOT NULL,
    ordering_key text,
    not_before bigint,
    seq bigint NOT NULL DEFAULT nextval('delivery_seq'),
    state smallint NOT NULL,
    due bigint,
    lease_token bigint,
    lease_expires_at bigint,
    lease_owner text,
    ready_since bigint,
    attempt integer NOT NULL DEFAULT 0,
    attempt_records integer NOT NULL DEFAULT 0,
    round integer NOT NULL DEFAULT 0,
    last_outcome text,
    dead_reason text,
    dead_at bigint,
    created_at bigint NOT NULL
);
CREATE INDEX deliveries_message ON deliveries (message_id, id);
CREATE INDEX deliveries_handler ON deliveries (handler);
CREATE INDEX deliveries_ready ON deliveries (handler, seq) WHERE state = 2;
CREATE INDEX deliveries_due ON deliveries (due, id) WHERE state IN (0, 4);
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at, id) WHERE state = 3;
CREATE INDEX deliveries_leased_owner ON deliveries (lease_owner) WHERE state = 3;
CREATE INDEX deliveries_blocked ON deliveries (handler, ordering_key, seq) WHERE state = 1;
CREATE INDEX deliveries_dead ON deliveries (dead_at, handler, id) WHERE state = 6;
CREATE TABLE attempts (
    delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    number integer NOT NULL,
    round integer NOT NULL,
    started_at bigint NOT NULL,
    finished_at bigint,
    -- The report, once finished: the outcome as JSON, output as bytes.
    outcome jsonb,
    duration_ms bigint,
    module_sha256 text,
    stdout bytea,
    stdout_truncated boolean,
    stderr bytea,
    stderr_truncated boolean,
    peak_memory_bytes bigint,
    fuel_used bigint,
    PRIMARY KEY (delivery_id, seq)
);
CREATE TABLE key_heads (
    handler text NOT NULL,
    ordering_key text NOT NULL,
    head uuid NOT NULL,
    PRIMARY KEY (handler, ordering_key)
);
CREATE TABLE counters (
    handler text NOT NULL,
    state smallint NOT NULL,
    stripe integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (handler, state, stripe)
);
CREATE FUNCTION count_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE my_stripe integer := pg_backend_pid() % 8;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.handler = NEW.handler THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO counters AS c VALUES (OLD.handler, OLD.state, my_stripe, -1)
        ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n - 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO counters AS c VALUES (NEW.handler, NEW.state, my_stripe, 1)
        ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_count AFTER INSERT OR DELETE OR UPDATE OF state, handler
    ON deliveries FOR EACH ROW EXECUTE FUNCTION count_delivery();
"#;

/// Creates `schema` if missing and brings it to [`VERSION`]; refuses a newer one.
pub(super) async fn migrate(client: &mut Client, schema: &str) -> StoreResult<i32> {
    let tx = client.transaction().await.map_err(db)?;
    // "already exists, skipping" notices are not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(db)?;
    // One migrator per schema at a time (runners starting together).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sluice-migrate:' || $1::text))",
        &[&schema],
    )
    .await
    .map_err(db)?;
    let quoted = quote_ident(schema);
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version integer NOT NULL);"
    ))
    .await
    .map_err(db)?;
    let row = tx
        .query_opt(&format!("SELECT version FROM {quoted}.schema_version"), &[])
        .await
        .map_err(db)?;
    let found: i32 = match row {
        Some(r) => r.get(0),
        None => {
            tx.execute(
                &format!("INSERT INTO {quoted}.schema_version VALUES (0)"),
                &[],
            )
            .await
            .map_err(db)?;
            0
        }
    };
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    tx.batch_execute(&format!("SET LOCAL search_path TO {quoted}"))
        .await
        .map_err(db)?;
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(schema, from, to = from + 1, "migrating the store's schema");
        tx.batch_execute(step).await.map_err(db)?;
    }
    tx.execute("UPDATE schema_version SET version = $1", &[&VERSION])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(VERSION)
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
