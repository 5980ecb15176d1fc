// sluice.ts — write sluice handlers in AssemblyScript.
//
// A handler is a WASI command: the payload arrives on stdin, the metadata in
// SLUICE_* environment variables, and the exit status is the outcome: 0
// acknowledges, 65 rejects (straight to the DLQ), anything else is retried (75
// by convention). `publish` and `log` wrap the host functions of import module
// "sluice". The exact contract is docs/guest-abi.md (ABI version 1).
//
// Compile with @assemblyscript/wasi-shim's asconfig.json (it provides the
// global `process` on WASI and replaces `abort` with one that writes to stderr
// and exits 255, which the sandbox counts as a trap, i.e. a retry), e.g.:
//
//   import { Meta, readPayload, EXIT_OK } from "../../../guest-sdk/assemblyscript/sluice";
//   const payload = readPayload();
//   const meta = Meta.read();
//   process.stdout.write(`got ${payload.length} bytes on ${meta.topic}\n`);
//   process.exit(EXIT_OK);

/** Acknowledge: the message is done; what the attempt published is committed. */
export const EXIT_OK: i32 = 0;
/** Reject (EX_DATAERR): the message is permanently bad; DLQ at once, no retry. */
export const EXIT_REJECT: i32 = 65;
/** Retryable failure (EX_TEMPFAIL); any status but 0 and 65 (up to 125) retries. */
export const EXIT_RETRY: i32 = 75;

/** publish() statuses (docs/guest-abi.md §6.1). */
export const OK: i32 = 0;
export const ERR_INVALID_TOPIC: i32 = -1;
export const ERR_PAYLOAD_TOO_LARGE: i32 = -2;
export const ERR_OUTBOX_FULL: i32 = -3;
export const ERR_BAD_POINTER: i32 = -4;
export const ERR_BAD_UTF8: i32 = -5;
export const ERR_INVALID_KEY: i32 = -6;
export const ERR_INVALID_DELAY: i32 = -7;

/** log() levels. */
export const LOG_TRACE: i32 = 0;
export const LOG_DEBUG: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_WARN: i32 = 3;
export const LOG_ERROR: i32 = 4;

// @ts-ignore: decorator
@external("sluice", "publish")
declare function host_publish(
  topicPtr: usize, topicLen: usize,
  payloadPtr: usize, payloadLen: usize,
  keyPtr: usize, keyLen: usize,
  delayMs: i64,
): i32;

// @ts-ignore: decorator
@external("sluice", "log")
declare function host_log(level: i32, msgPtr: usize, msgLen: usize): void;

/**
 * Buffers one message for the outbox, committed only if this attempt exits 0.
 * `key` "" means no ordering key, `delayMs` 0 no delay. Returns OK or a
 * negative ERR_* (nothing buffered). Its idempotency key derives from (this
 * message, handler, call index), so a re-run duplicates nothing.
 */
export function publish(topic: string, payload: Uint8Array, key: string = "", delayMs: i64 = 0): i32 {
  const t = String.UTF8.encode(topic);
  const k = String.UTF8.encode(key);
  return host_publish(
    changetype<usize>(t), <usize>t.byteLength,
    payload.dataStart, <usize>payload.length,
    changetype<usize>(k), <usize>k.byteLength,
    delayMs,
  );
}

/** What a publish status means, for a log line. */
export function publishStatusText(status: i32): string {
  switch (status) {
    case OK: return "ok";
    case ERR_INVALID_TOPIC: return "invalid topic name";
    case ERR_PAYLOAD_TOO_LARGE: return "payload larger than 1 MiB";
    case ERR_OUTBOX_FULL: return "outbox full (100 messages or 8 MiB per attempt)";
    case ERR_BAD_POINTER: return "bad pointer";
    case ERR_BAD_UTF8: return "topic or key is not UTF-8";
    case ERR_INVALID_KEY: return "invalid ordering key (over 256 bytes or NUL)";
    case ERR_INVALID_DELAY: return "negative delay";
    default: return "unknown reason";
  }
}

/** Writes one structured log line through the host (kept whatever the outcome). */
export function log(level: i32, msg: string): void {
  const m = String.UTF8.encode(msg);
  host_log(level, changetype<usize>(m), <usize>m.byteLength);
}

/** Reads all of stdin: the payload, exactly as enqueued. */
export function readPayload(): Uint8Array {
  let buf = new ArrayBuffer(4096);
  let len = 0;
  for (;;) {
    if (len == buf.byteLength) {
      const bigger = new ArrayBuffer(buf.byteLength * 2);
      memory.copy(changetype<usize>(bigger), changetype<usize>(buf), <usize>len);
      buf = bigger;
    }
    const n = process.stdin.read(buf, len);
    if (n <= 0) break;
    len += n;
  }
  return Uint8Array.wrap(buf, 0, len);
}

function envOr(name: string, fallback: string): string {
  return process.env.has(name) ? process.env.get(name) : fallback;
}

function envNumber(name: string): u32 {
  if (!process.env.has(name)) return 0;
  const text = process.env.get(name);
  if (text.length == 0 || text.length > 9) return 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return 0;
  }
  return <u32>I32.parseInt(text, 10);
}

/**
 * The message's metadata. Strings are "" when a variable is missing (outside
 * sluice), and so is `orderingKey` when the message has none; `attempt` and
 * `maxAttempts` are 1 when missing.
 */
export class Meta {
  topic: string = "";
  handler: string = "";
  messageId: string = "";
  idempotencyKey: string = "";
  orderingKey: string = "";
  /** RFC 3339 UTC, e.g. 2026-11-27T22:10:43.123Z. */
  enqueuedAt: string = "";
  /** 1-based. */
  attempt: u32 = 1;
  maxAttempts: u32 = 1;

  /** Reads the SLUICE_* variables. */
  static read(): Meta {
    const m = new Meta();
    m.topic = envOr("SLUICE_TOPIC", "");
    m.handler = envOr("SLUICE_HANDLER", "");
    m.messageId = envOr("SLUICE_MESSAGE_ID", "");
    m.idempotencyKey = envOr("SLUICE_IDEMPOTENCY_KEY", "");
    m.orderingKey = envOr("SLUICE_ORDERING_KEY", "");
    m.enqueuedAt = envOr("SLUICE_ENQUEUED_AT", "");
    const attempt = envNumber("SLUICE_ATTEMPT");
    m.attempt = attempt > 0 ? attempt : 1;
    const max = envNumber("SLUICE_MAX_ATTEMPTS");
    m.maxAttempts = max >= m.attempt ? max : m.attempt;
    return m;
  }
}
