// The JavaScript guest SDK for sluice handlers (the sluice:handler@1.0.0
// world, guest-sdk/wit; docs/guest-sdk.md "JavaScript"). Built into a
// component by componentize-js with `-d fetch-event`, and also `-d http`
// unless the handler calls `fetch` (outbound HTTP under the handler's egress
// policy, docs/egress.md). A handler may be an async function: componentize-js
// runs the event loop until its promise settles.
//
//   import { handler, publish, Reject } from "sluice";
//   export const handler = sluiceHandler((msg) => { ... });
//
// Returning acknowledges the message; `throw new Reject(reason)` sends it to
// the dead-letter queue with no retry; `throw new Retry(reason)` (or any other
// exception, whose stack goes to stderr) retries it with backoff.
// console.log output is the attempt's stdout. Each attempt runs in a fresh
// instance: module-level state never carries over between attempts.
import { log as hostLog, publish as hostPublish } from "sluice:handler/host@1.0.0";

/** A permanent failure: no retry, the message goes to the DLQ. */
export class Reject extends Error {}

/** A temporary failure: retried with backoff while attempts remain. */
export class Retry extends Error {}

/** A refused publish; `kind` is the WIT case, e.g. "outbox-full". */
export class PublishError extends Error {
  constructor(kind) {
    super(`sluice publish refused: ${kind}`);
    this.kind = kind;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** One delivery. */
export class Message {
  constructor(m) {
    this.id = m.id;
    this.topic = m.topic;
    this.handler = m.handler;
    this.idempotencyKey = m.idempotencyKey;
    this.orderingKey = m.orderingKey ?? null;
    this.attempt = m.attempt;
    this.maxAttempts = m.maxAttempts;
    this.enqueuedAt = m.enqueuedAt;
    this.headers = Object.fromEntries(m.headers);
    this.env = Object.fromEntries(m.env);
    this.payload = m.payload;
  }

  /** The payload as UTF-8 text; throws Reject if it is not UTF-8. */
  text() {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new Reject(`payload is not UTF-8: ${e.message}`);
    }
  }

  /** The payload parsed as JSON; throws Reject if it is not JSON. */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Reject(`payload is not valid JSON: ${e.message}`);
    }
  }
}

/**
 * Buffers a message in the attempt's outbox (committed only if the attempt
 * succeeds); throws PublishError if sluice refuses it.
 */
export function publish(topic, payload, { key = undefined, delayMs = 0 } = {}) {
  const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
  try {
    hostPublish(topic, bytes, key, BigInt(delayMs));
  } catch (e) {
    throw new PublishError(e?.payload?.tag ?? String(e));
  }
}

/** Adds a line to the attempt's log; level: trace, debug, info, warn, error. */
export function log(message, level = "info") {
  hostLog(level, message);
}

/** The `handle-error` the host receives for an exception `e`. */
function handleError(e) {
  if (e instanceof Reject) return { tag: "reject", val: e.message };
  if (e instanceof Retry) return { tag: "retry", val: e.message };
  console.error(e?.stack ?? String(e));
  return { tag: "retry", val: String(e) };
}

/**
 * The `handler` export of the sluice world, calling `fn(message)`; `fn` may
 * be async (its promise is awaited, its rejection handled as a throw).
 */
export function sluiceHandler(fn) {
  return {
    handle(msg) {
      let result;
      try {
        result = fn(new Message(msg));
      } catch (e) {
        // A thrown plain value is the `handle-error` the host receives.
        throw handleError(e);
      }
      if (result && typeof result.then === "function") {
        return result.then(
          () => undefined,
          (e) => {
            throw handleError(e);
          },
        );
      }
    },
  };
}
