//! Signals across runners: LISTEN/NOTIFY, with a polling fallback.
//!
//! A transaction that makes deliveries ready sends one `pg_notify` on the
//! schema's ready channel (one per transaction, however many deliveries: the
//! debounce), delivered at its commit; handler changes notify the handlers
//! channel. The payload is the sending store's instance id, so a store
//! ignores its own notifications (it already bumped its signals locally).
//!
//! The listener holds its own connection. Notifications sent while it is
//! disconnected are lost, so after every (re)connect it bumps both signals,
//! and every `PgOptions::poll_fallback` it bumps the ready signal anyway: a lost notification
//! only delays a wake by at most that long.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::error::db;
use super::sql::execute;
use super::{Core, Tx};
use crate::store::StoreResult;

/// Wait before reconnecting a lost listener connection.
const RECONNECT: Duration = Duration::from_secs(1);

/// The schema's two channel names.
pub(super) fn channels(schema: &str) -> (String, String) {
    (
        format!("sluice_ready_{schema}"),
        format!("sluice_handlers_{schema}"),
    )
}

/// What the listener bumps.
pub(super) struct Signals {
    pub(super) ready: watch::Sender<u64>,
    pub(super) handlers: watch::Sender<u64>,
}

impl Core {
    /// Queues a ready notification in `tx` (sent at its commit).
    pub(super) async fn notify_ready(&self, tx: &Tx<'_>) -> StoreResult<()> {
        execute(
            tx,
            "SELECT pg_notify($1, $2)",
            &[&self.channels.0, &self.instance],
        )
        .await?;
        Ok(())
    }

    /// Wakes this store's producers.
    pub(super) fn signal_ready(&self) {
        self.signals.ready.send_modify(|n| *n += 1);
    }

    /// Tells every runner (this one at once) that handlers changed. Best
    /// effort: a lost notification is covered by the runners' handler poll.
    pub(super) async fn signal_handlers(&self) {
        self.signals.handlers.send_modify(|n| *n += 1);
        if let Ok(c) = self.client().await {
            let r = c
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&self.channels.1, &self.instance],
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %db(e), "could not notify other runners of a handler change");
            }
        }
    }
}

/// Connects the listener (the first connection is made before this returns,
/// so a store that opened is listening) and keeps it connected until dropped.
pub(super) async fn start(
    config: tokio_postgres::Config,
    core: Arc<Core>,
) -> StoreResult<tokio::task::JoinHandle<()>> {
    let first = listen(&config, &core).await?;
    Ok(tokio::spawn(async move {
        let mut conn = Some(first);
        loop {
            if let Some(rx) = conn.take() {
                pump(rx, &core).await;
                tracing::warn!("lost the LISTEN connection to the database; reconnecting");
            }
            tokio::time::sleep(RECONNECT).await;
            match listen(&config, &core).await {
                Ok(rx) => {
                    core.signal_ready();
                    core.signals.handlers.send_modify(|n| *n += 1);
                    conn = Some(rx);
                }
                Err(e) => tracing::warn!(error = %e, "cannot reconnect the LISTEN connection"),
            }
        }
    }))
}

/// A listening connection: its client (kept alive by the pump) and its notifications.
struct Listening {
    _client: tokio_postgres::Client,
    rx: mpsc::UnboundedReceiver<tokio_postgres::Notification>,
}

async fn listen(config: &tokio_postgres::Config, core: &Core) -> StoreResult<Listening> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await.map_err(db)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection ended");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN \"{}\"; LISTEN \"{}\"",
            core.channels.0, core.channels.1
        ))
        .await
        .map_err(db)?;
    Ok(Listening {
        _client: client,
        rx,
    })
}

/// Forwards notifications to the signals, with the polling fallback,
/// until the connection ends.
async fn pump(mut l: Listening, core: &Core) {
    let mut poll = tokio::time::interval(core.poll_fallback);
    poll.tick().await;
    loop {
        tokio::select! {
            n = l.rx.recv() => match n {
                Some(n) if n.payload() == core.instance => {}
                Some(n) if n.channel() == core.channels.1 => {
                    core.signals.handlers.send_modify(|v| *v += 1);
                }
                Some(_) => core.signal_ready(),
                None => return,
            },
            _ = poll.tick() => core.signal_ready(),
        }
    }
}
