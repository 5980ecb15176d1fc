//! Running statements: every statement is prepared once per connection
//! (deadpool's statement cache), so a verb costs one round trip per
//! statement, not two; and every error becomes a [`StoreError`](crate::store::StoreError).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::db;
use crate::store::StoreResult;

/// A statement parameter.
pub(super) type P<'a> = &'a (dyn ToSql + Sync);

/// Rows of `sql`.
pub(super) async fn query<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[P<'_>],
) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query(&st, params).await.map_err(db)
}

/// At most one row of `sql`.
pub(super) async fn query_opt<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[P<'_>],
) -> StoreResult<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query_opt(&st, params).await.map_err(db)
}

/// Exactly one row of `sql`.
pub(super) async fn query_one<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[P<'_>],
) -> StoreResult<Row> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query_one(&st, params).await.map_err(db)
}

/// Runs `sql`; returns the rows it changed.
pub(super) async fn execute<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: &[P<'_>],
) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.execute(&st, params).await.map_err(db)
}
