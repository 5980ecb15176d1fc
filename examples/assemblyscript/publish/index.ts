// publish: fans an order {"order_id": "A-1" | 17, "email": "...", "total": 12.5}
// out to topic `email` ({"order_id":..,"email":..}) and topic `analytics`
// ({"event":"order_placed","order_id":..,"total":..}), both with the order id
// as ordering key. Both are committed only if this attempt exits 0.
import {
  EXIT_OK, EXIT_REJECT, EXIT_RETRY, Meta, OK, publish, publishStatusText, readPayload,
} from "../../../guest-sdk/assemblyscript/sluice";
import { Bytes, KIND_NUMBER, KIND_STRING, decodeString, encodeString, member, valid } from "../lib/json";

function reject(why: string): i32 {
  process.stderr.write(`publish: reject: ${why}\n`);
  return EXIT_REJECT;
}

// A non-negative integer that fits in 64 bits, written as digits only.
function isU64(b: Uint8Array, start: i32, end: i32): bool {
  for (let i = start; i < end; i++) if (b[i] < 0x30 || b[i] > 0x39) return false;
  const max = "18446744073709551615";
  const len = end - start;
  if (len != 20) return len < 20;
  for (let i = 0; i < 20; i++) {
    const d = <i32>b[start + i], m = max.charCodeAt(i);
    if (d != m) return d < m;
  }
  return true;
}

function send(topic: string, body: Uint8Array, key: string): bool {
  const status = publish(topic, body, key);
  if (status == OK) return true;
  process.stderr.write(
    `publish: retry: publish to ${topic} refused: ${publishStatusText(status)} (status ${status})\n`,
  );
  return false;
}

function main(): i32 {
  const b = readPayload();
  if (!valid(b)) return reject("malformed JSON payload");
  const missing = "an order needs order_id, email and total";
  const idTok = member(b, "order_id");
  if (idTok == null) return reject(missing);
  const emailTok = member(b, "email");
  if (emailTok == null) return reject(missing);
  const totalTok = member(b, "total");
  if (totalTok == null) return reject(missing);
  if (emailTok.kind != KIND_STRING) return reject("email is not a string");
  if (totalTok.kind != KIND_NUMBER) return reject("total is not a number");
  let id: Uint8Array;
  if (idTok.kind == KIND_STRING) id = decodeString(b, idTok);
  else if (idTok.kind == KIND_NUMBER && isU64(b, idTok.start, idTok.end)) id = b.slice(idTok.start, idTok.end);
  else return reject("order_id is neither a string nor a non-negative integer");
  if (id.length == 0) return reject("order_id is empty");
  const key = String.UTF8.decode(id.slice().buffer);

  const emailReq = new Bytes();
  emailReq.pushAscii("{\"order_id\":");
  encodeString(emailReq, id);
  emailReq.pushAscii(",\"email\":");
  encodeString(emailReq, decodeString(b, emailTok));
  emailReq.pushAscii("}");
  if (!send("email", emailReq.view(), key)) return EXIT_RETRY;

  const placed = new Bytes();
  placed.pushAscii("{\"event\":\"order_placed\",\"order_id\":");
  encodeString(placed, id);
  placed.pushAscii(",\"total\":");
  placed.pushBytes(b, totalTok.start, totalTok.end);
  placed.pushAscii("}");
  if (!send("analytics", placed.view(), key)) return EXIT_RETRY;

  process.stdout.write(`published order ${key} to email and analytics\n`);
  // With FAIL_FIRST_ATTEMPT set, attempt 1 fails after publishing: the outbox
  // discards what it published, and the retry publishes it again, once.
  if (process.env.has("FAIL_FIRST_ATTEMPT") && Meta.read().attempt == 1) {
    process.stderr.write("publish: failing after publishing, as FAIL_FIRST_ATTEMPT asks\n");
    return EXIT_RETRY;
  }
  return EXIT_OK;
}

process.exit(main());
