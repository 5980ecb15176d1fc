//! `query_deliveries`: deliveries by state, key, topic, handler, outcome and
//! time, paged, from the indexes.
//!
//! A delivery id, a message id or an idempotency key names a few candidates
//! directly (`D`, `d`, `I`). Otherwise each selected handler contributes
//! ordered ranges of the query indexes written by `delivery::save`: `Q`
//! (handler, state, delivery id) per state asked for, or `O` (handler,
//! ordering key, delivery id). Delivery ids are UUID v7s of the creation
//! time, so the time range and the page cursor are bounds on those ranges,
//! and a range is read forwards (oldest first) or backwards (newest first).
//! Each range yields at most `limit + 1` matches; the merge keeps the first
//! `limit` in the query's order and the extra one tells whether a next page
//! exists. The remaining criteria (outcome kind above all) filter the
//! candidates as they are read.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::codec::{self, parse_id_time_value};
use super::delivery::{DeliveryRec, query_entries};
use super::txn::Txn;
use super::{Inner, keys};
use crate::store::{
    DeliveryId, DeliveryPage, DeliveryQuery, DeliveryState, HandlerRecord, StoreError, StoreResult,
};

/// Index entries read per chunk of a range scan.
const SCAN_CHUNK: usize = 256;
/// Deliveries whose query entries are written per batch when building them on open.
const BUILD_CHUNK: usize = 1024;
/// The derived indexes' layout version, stored under `keys::QUERY_INDEX_VERSION`:
/// 1 the query indexes (`Q`, `O`), 2 also the module reference counts (`U`).
const QUERY_INDEX_VERSION: u64 = 2;

impl Inner {
    pub(super) fn query_deliveries(
        &self,
        q: &DeliveryQuery,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<DeliveryPage> {
        let handlers: BTreeMap<String, HandlerRecord> = self
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(h) = &q.handler
            && !handlers.contains_key(h)
        {
            return Err(StoreError::UnknownHandler(h.clone()));
        }
        let bounds = Bounds::new(q, after);
        let mut found = match self.direct_candidates(q, &handlers)? {
            Some(ids) => {
                let mut recs = Vec::new();
                for id in ids.into_iter().filter(|id| bounds.contains(*id)) {
                    let rec = match self.read_delivery(id) {
                        Ok(r) => r,
                        Err(StoreError::UnknownDelivery(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    if self.matches(q, &handlers, &rec)? {
                        recs.push(rec);
                    }
                }
                recs
            }
            None => {
                let mut recs = Vec::new();
                for prefix in ranges(q, &handlers) {
                    recs.extend(self.scan_range(q, &handlers, &prefix, &bounds, limit + 1)?);
                }
                recs
            }
        };
        found.sort_by_key(|r| r.id);
        if q.newest_first {
            found.reverse();
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|r| r.id)
        } else {
            None
        };
        let deliveries = found
            .into_iter()
            .map(|r| self.status(r))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(DeliveryPage { deliveries, next })
    }

    /// The candidates named by a delivery id, a message id or an
    /// idempotency key; `None` when the query names none.
    fn direct_candidates(
        &self,
        q: &DeliveryQuery,
        handlers: &BTreeMap<String, HandlerRecord>,
    ) -> StoreResult<Option<Vec<DeliveryId>>> {
        if let Some(id) = q.delivery_id {
            return Ok(Some(vec![id]));
        }
        let mut messages = BTreeSet::new();
        if let Some(id) = q.message_id {
            messages.insert(id);
        } else if let Some(key) = &q.idempotency_key {
            let topics: BTreeSet<&str> = match &q.topic {
                Some(t) => [t.as_str()].into(),
                None => handlers.values().map(|h| h.topic.as_str()).collect(),
            };
            for topic in topics {
                if let Some(v) = self.tree.get(keys::idempotency(topic, key)) {
                    messages.insert(parse_id_time_value(&v, "idempotency entry")?.0);
                }
            }
            // A message enqueued without a key has its id as its key.
            if let Ok(id) = key.parse::<Uuid>() {
                messages.insert(id);
            }
        } else {
            return Ok(None);
        }
        let mut ids = Vec::new();
        for m in messages {
            if q.idempotency_key.is_some() {
                match Txn::new(&self.tree).message(m) {
                    Ok(msg) if Some(&msg.idempotency_key) == q.idempotency_key.as_ref() => {}
                    _ => continue,
                }
            }
            for (k, _) in self.tree.scan_prefix(keys::message_deliveries(m)) {
                ids.push(keys::parse_message_delivery(&k)?);
            }
        }
        Ok(Some(ids))
    }

    /// Up to `max` matches in one index range, in the query's order.
    fn scan_range(
        &self,
        q: &DeliveryQuery,
        handlers: &BTreeMap<String, HandlerRecord>,
        prefix: &[u8],
        bounds: &Bounds,
        max: usize,
    ) -> StoreResult<Vec<DeliveryRec>> {
        let mut out = Vec::new();
        let mut visit = |k: &[u8]| -> StoreResult<bool> {
            let id = keys::parse_trailing_id(k)?;
            if !bounds.contains(id) {
                return Ok(true);
            }
            let rec = self.read_delivery(id)?;
            if self.matches(q, handlers, &rec)? {
                out.push(rec);
            }
            Ok(out.len() < max)
        };
        if q.newest_first {
            let mut below = bounds.hi.map(|id| with_id(prefix, id));
            loop {
                let chunk = self.tree.rev_chunk(prefix, below.as_deref(), SCAN_CHUNK);
                let Some((last, _)) = chunk.last() else { break };
                let last = last.clone();
                for (k, _) in &chunk {
                    if keys::parse_trailing_id(k)? < bounds.lo.unwrap_or(Uuid::nil()) || !visit(k)?
                    {
                        return Ok(out);
                    }
                }
                below = Some(last);
            }
        } else {
            let from = match bounds.lo {
                Some(id) => with_id(prefix, id),
                None => prefix.to_vec(),
            };
            for (k, _) in self.tree.range_from(from) {
                if !k.starts_with(prefix) || bounds.hi.is_some_and(|hi| !id_below(&k, hi)) {
                    break;
                }
                if !visit(&k)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether `rec` meets every criterion of `q`.
    fn matches(
        &self,
        q: &DeliveryQuery,
        handlers: &BTreeMap<String, HandlerRecord>,
        rec: &DeliveryRec,
    ) -> StoreResult<bool> {
        let topic = handlers.get(&rec.handler).map(|h| h.topic.as_str());
        let plain = q.handler.as_ref().is_none_or(|h| *h == rec.handler)
            && q.topic.as_deref().is_none_or(|t| Some(t) == topic)
            && q.state_matches(rec.state)
            && q.message_id.is_none_or(|m| m == rec.message_id)
            && q.ordering_key
                .as_ref()
                .is_none_or(|k| Some(k) == rec.ordering_key.as_ref())
            && q.since.is_none_or(|t| rec.created_at >= t)
            && q.until.is_none_or(|t| rec.created_at < t);
        if !plain {
            return Ok(false);
        }
        match &q.outcome {
            Some(kind) => Ok(self.last_outcome_kind(rec)? == Some(kind.as_str())),
            None => Ok(true),
        }
    }

    /// The outcome kind of a delivery's last attempt; `None` before its first
    /// attempt and while that attempt runs.
    pub(super) fn last_outcome_kind(&self, rec: &DeliveryRec) -> StoreResult<Option<&'static str>> {
        match self.tree.get(keys::attempt(rec.id, rec.attempt_records)) {
            Some(v) => Ok(codec::decode_attempt(&v)?.report.map(|r| r.outcome.kind())),
            None => Ok(None),
        }
    }

    /// Writes the derived indexes (query entries, module references) of every
    /// stored delivery when the store was written by a build without them (or
    /// with an older layout); a no-op once their version is stored. Runs on
    /// open, before any verb.
    pub(super) fn build_query_indexes(&self) -> StoreResult<()> {
        let current = self
            .tree
            .get(keys::QUERY_INDEX_VERSION)
            .map(|v| codec::parse_u64_value(&v));
        if current == Some(QUERY_INDEX_VERSION) {
            return Ok(());
        }
        let mut from = keys::DELIVERIES.to_vec();
        let mut built = 0u64;
        loop {
            let mut w = self.lock();
            let mut txn = Txn::new(&self.tree);
            let mut last = None;
            for (k, v) in self.tree.range_from(from.clone()).take(BUILD_CHUNK) {
                if !k.starts_with(keys::DELIVERIES) {
                    break;
                }
                let rec: DeliveryRec = codec::decode(&v)?;
                for entry in query_entries(&rec) {
                    txn.put(entry, Vec::new());
                }
                self.refer_attempts(&mut txn, rec.id)?;
                built += 1;
                last = Some(k);
            }
            let Some(mut k) = last else {
                txn.put(
                    keys::QUERY_INDEX_VERSION.to_vec(),
                    codec::u64_value(QUERY_INDEX_VERSION).to_vec(),
                );
                self.commit(&mut w, txn)?;
                break;
            };
            self.commit(&mut w, txn)?;
            k.push(0);
            from = k;
        }
        if built > 0 {
            tracing::info!(deliveries = built, "built the delivery query indexes");
        }
        Ok(())
    }
}

/// The id range a query reads: `lo` inclusive, `hi` exclusive, from its time
/// range and its page cursor.
struct Bounds {
    lo: Option<Uuid>,
    hi: Option<Uuid>,
    /// The cursor itself, excluded in either direction.
    after: Option<Uuid>,
}

impl Bounds {
    fn new(q: &DeliveryQuery, after: Option<DeliveryId>) -> Bounds {
        let mut lo = q.since.map(keys::min_uuid_at);
        let mut hi = q.until.map(keys::min_uuid_at);
        if let Some(a) = after {
            if q.newest_first {
                hi = Some(hi.map_or(a, |h| h.min(a)));
            } else {
                lo = Some(lo.map_or(a, |l| l.max(a)));
            }
        }
        Bounds { lo, hi, after }
    }

    fn contains(&self, id: Uuid) -> bool {
        self.lo.is_none_or(|l| id >= l) && self.hi.is_none_or(|h| id < h) && self.after != Some(id)
    }
}

/// `prefix` followed by `id`: where a range's entries at `id` are.
fn with_id(prefix: &[u8], id: Uuid) -> Vec<u8> {
    prefix.iter().copied().chain(*id.as_bytes()).collect()
}

/// Whether the id ending index key `k` sorts below `hi`.
fn id_below(k: &[u8], hi: Uuid) -> bool {
    keys::parse_trailing_id(k).is_ok_and(|id| id < hi)
}

/// The index ranges (prefixes) a query without direct candidates reads.
fn ranges(q: &DeliveryQuery, handlers: &BTreeMap<String, HandlerRecord>) -> Vec<Vec<u8>> {
    let selected = handlers.values().filter(|h| {
        q.handler.as_ref().is_none_or(|n| *n == h.name)
            && q.topic.as_ref().is_none_or(|t| *t == h.topic)
    });
    let states: Vec<DeliveryState> = DeliveryState::ALL
        .into_iter()
        .filter(|s| q.state_matches(*s))
        .collect();
    let mut out = Vec::new();
    for h in selected {
        match &q.ordering_key {
            Some(key) => out.push(keys::by_ordering_key_of(&h.name, key)),
            None => out.extend(states.iter().map(|s| keys::by_state_of(&h.name, *s))),
        }
    }
    out
}
