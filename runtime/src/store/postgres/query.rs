//! `query_deliveries`: the dashboard's lists and search and
//! `GET /v1/deliveries`, as one indexed query built from the criteria given.
//!
//! Only the criteria set become conditions (a generic plan over nullable
//! parameters would scan the table). A delivery id or message id is a
//! primary-key or index lookup; an idempotency key goes through the
//! `idempotency` table's primary key per subscribed topic (so within its
//! window, as on the embedded backend); handler and state, or handler and
//! ordering key, select a range of the query indexes (schema version 2)
//! ordered by delivery id, a UUID v7 of the creation time, bounded by the
//! page cursor. Outcome kind is the last finished attempt's: a leased
//! delivery's current attempt has none yet.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::Core;
use super::rows::{DELIVERY_COLS, DeliveryRow, col, state_code};
use super::sql::query;
use crate::store::{DeliveryId, DeliveryPage, DeliveryQuery, DeliveryState, StoreResult};

/// The query's conditions over `deliveries d` and their parameters.
#[derive(Default)]
struct Where {
    conds: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Where {
    /// Adds `value` as the next parameter; returns its placeholder.
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn cond(&mut self, cond: String) {
        self.conds.push(cond);
    }
}

impl Core {
    pub(super) async fn query_in<C: GenericClient + Sync>(
        &self,
        c: &C,
        q: &DeliveryQuery,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<DeliveryPage> {
        if let Some(h) = &q.handler {
            self.handler_record(c, h).await?;
        }
        let mut w = Where::default();
        if let Some(id) = q.delivery_id {
            let p = w.param(id);
            w.cond(format!("d.id = {p}"));
        }
        if let Some(id) = q.message_id {
            let p = w.param(id);
            w.cond(format!("d.message_id = {p}"));
        }
        if let Some(key) = &q.idempotency_key {
            let k = w.param(key.clone());
            let topics = match &q.topic {
                Some(t) => format!("SELECT {}::text", w.param(t.clone())),
                None => "SELECT DISTINCT topic FROM handlers".to_string(),
            };
            // A message enqueued without a key has its id as its key.
            let by_id = match key.parse::<Uuid>() {
                Ok(id) => format!(" OR d.message_id = {}", w.param(id)),
                Err(_) => String::new(),
            };
            w.cond(format!(
                "(d.message_id IN (SELECT i.message_id FROM idempotency i
                   WHERE i.key = {k} AND i.topic IN ({topics})){by_id})
                 AND EXISTS (SELECT 1 FROM messages m
                   WHERE m.id = d.message_id AND m.idempotency_key = {k})"
            ));
        }
        if let Some(key) = &q.ordering_key {
            let p = w.param(key.clone());
            w.cond(format!("d.ordering_key = {p}"));
        }
        if let Some(topic) = &q.topic {
            let p = w.param(topic.clone());
            w.cond(format!(
                "d.handler IN (SELECT name FROM handlers WHERE topic = {p})"
            ));
        }
        if let Some(h) = &q.handler {
            let p = w.param(h.clone());
            w.cond(format!("d.handler = {p}"));
        }
        match q.state {
            None => {}
            Some(DeliveryState::Ready | DeliveryState::Blocked) => w.cond(format!(
                "d.state IN ({}, {})",
                state_code(DeliveryState::Blocked),
                state_code(DeliveryState::Ready)
            )),
            Some(s) => w.cond(format!("d.state = {}", state_code(s))),
        }
        if let Some(kind) = &q.outcome {
            let p = w.param(kind.clone());
            w.cond(format!(
                "d.last_outcome = {p} AND d.state <> {}",
                state_code(DeliveryState::Leased)
            ));
        }
        if let Some(t) = q.since {
            let p = w.param(col(t));
            w.cond(format!("d.created_at >= {p}"));
        }
        if let Some(t) = q.until {
            let p = w.param(col(t));
            w.cond(format!("d.created_at < {p}"));
        }
        let (cmp, order) = if q.newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(id) = after {
            let p = w.param(id);
            w.cond(format!("d.id {cmp} {p}"));
        }
        let wanted = limit.saturating_add(1).min(i64::MAX as usize) as i64;
        let lim = w.param(wanted);
        let filter = if w.conds.is_empty() {
            "TRUE".to_string()
        } else {
            w.conds.join(" AND ")
        };
        let cols = DELIVERY_COLS
            .split(',')
            .map(|c| format!("d.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM deliveries d WHERE {filter} ORDER BY d.id {order} LIMIT {lim}"
        );
        let params: Vec<&(dyn ToSql + Sync)> = w
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = query(c, &sql, &params).await?;
        let mut recs = rows
            .iter()
            .map(DeliveryRow::from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let next = if recs.len() > limit {
            recs.truncate(limit);
            recs.last().map(|r| r.id)
        } else {
            None
        };
        let mut deliveries = Vec::with_capacity(recs.len());
        for r in recs {
            deliveries.push(self.status_of(c, r).await?);
        }
        Ok(DeliveryPage { deliveries, next })
    }
}
