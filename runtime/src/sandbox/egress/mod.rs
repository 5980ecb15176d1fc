//! Outbound HTTP(S) for guests, under a per-handler allow-list
//! (docs/egress.md): deny by default, origins listed per handler, private,
//! loopback, link-local and metadata addresses refused unless the policy
//! names their range, per-attempt limits, connections bounded per handler,
//! and every request recorded in the attempt.
//!
//! # Module map
//! - [`policy`]: [`EgressPolicy`] (stored with the handler policy), its
//!   validation and parsed [`Rules`]; the forbidden address ranges.
//! - [`client`]: the one path every request takes ([`AttemptEgress::send`]):
//!   limits, origin check, resolution, address check, connection, TLS.
//! - [`record`]: [`EgressRecord`], what the attempt keeps of each request.
//! - [`abi`]: ABI 1's `sluice::http_request` host function over the client.
//! - [`wasi_http`]: the `wasi:http` outgoing handler of components
//!   (wasmtime-wasi-http) over the same client.

pub mod abi;
pub mod client;
pub mod policy;
pub mod record;
pub mod wasi_http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub use client::{AttemptEgress, EgressError};
pub use policy::{EgressPolicy, EgressPolicyError, Rules};
pub use record::{EgressOutcome, EgressRecord};

/// The connection slots of every handler that has run, by handler name:
/// each handler's attempts share its [`EgressPolicy::max_connections`].
#[derive(Debug, Default)]
pub(crate) struct HandlerSlots(Mutex<HashMap<String, (u32, client::ConnectionSlots)>>);

impl HandlerSlots {
    /// `handler`'s slots, sized `max`; a new size (a re-registration) starts
    /// a new set, while connections open under the old one finish under it.
    pub(crate) fn get(&self, handler: &str, max: u32) -> client::ConnectionSlots {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(handler) {
            Some((size, slots)) if *size == max => Arc::clone(slots),
            _ => {
                let slots = Arc::new(Semaphore::new(max as usize));
                map.insert(handler.to_owned(), (max, Arc::clone(&slots)));
                slots
            }
        }
    }
}
