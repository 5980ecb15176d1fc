//! `workflow`: "on signup, send a welcome email; 24 h later send a reminder
//! unless the user has replied; then mark the user stale", built from
//! handlers, delayed publishes and idempotency keys only (docs/workflows.md).
//! One module, registered as five handlers; it does what its handler name
//! (`SLUICE_HANDLER`) says:
//!
//! | handler | topic | does |
//! | --- | --- | --- |
//! | `welcome` | `signups` | publishes the welcome email, and `{"user"}` to `reply-deadline` delayed by 24 h (the durable timer) |
//! | `deadline` | `reply-deadline` | publishes `{"user", "event": "no-reply"}` to `conversation` |
//! | `conversation` | `conversation` | on `no-reply`: publishes the reminder email and `{"user", "status": "stale"}` to `user-status`; on `replied`: nothing more |
//! | `email` | `emails` | sends (prints) the email |
//! | `mark-stale` | `user-status` | records (prints) the status |
//!
//! "Unless the user has replied" is a race between two enqueues for one
//! idempotency key: the deadline's publish gets the key sluice derives for
//! it, `outbox:<deadline message id>:deadline:0`, and a reply is enqueued on
//! `conversation` by the application *with that same key*. Whichever comes
//! first is the one event; the other is a duplicate that creates nothing.
//! Every step runs exactly once whatever restarts happen: each publish is
//! committed with the attempt that made it (the outbox), under a derived key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_guest::{Error, Message, Result, publish};

/// How long the user has to reply before the reminder: 24 h.
const REPLY_WITHIN: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct User {
    user: String,
}

#[derive(Serialize)]
struct Email<'a> {
    user: &'a str,
    email: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Event {
    user: String,
    event: String,
}

#[derive(Serialize)]
struct Status<'a> {
    user: &'a str,
    status: &'a str,
}

fn handle(msg: &Message) -> Result {
    match msg.handler() {
        "welcome" => {
            let u: User = msg.json()?;
            publish("emails", Vec::new())
                .json(&Email {
                    user: &u.user,
                    email: "welcome",
                })?
                .send()?;
            publish("reply-deadline", Vec::new())
                .json(&serde_json::json!({ "user": u.user }))?
                .delay(REPLY_WITHIN)
                .send()?;
        }
        "deadline" => {
            let u: User = msg.json()?;
            publish("conversation", Vec::new())
                .json(&Event {
                    user: u.user,
                    event: "no-reply".into(),
                })?
                .send()?;
        }
        "conversation" => {
            let e: Event = msg.json()?;
            match e.event.as_str() {
                "no-reply" => {
                    publish("emails", Vec::new())
                        .json(&Email {
                            user: &e.user,
                            email: "reminder",
                        })?
                        .send()?;
                    publish("user-status", Vec::new())
                        .json(&Status {
                            user: &e.user,
                            status: "stale",
                        })?
                        .send()?;
                }
                "replied" => println!("{} replied: no reminder", e.user),
                other => return Err(Error::reject(format!("unknown event {other:?}"))),
            }
        }
        "email" => {
            let v: serde_json::Value = msg.json()?;
            println!(
                "send {} email to {}",
                v["email"].as_str().unwrap_or("?"),
                v["user"].as_str().unwrap_or("?")
            );
        }
        "mark-stale" => {
            let v: serde_json::Value = msg.json()?;
            println!(
                "{} is now {}",
                v["user"].as_str().unwrap_or("?"),
                v["status"].as_str().unwrap_or("?")
            );
        }
        other => {
            return Err(Error::reject(format!(
                "no workflow step is called {other:?}"
            )));
        }
    }
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}
