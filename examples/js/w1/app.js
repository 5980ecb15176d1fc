// w1: the benchmark's workload (docs/benchmarks.md, W2): parse a small JSON
// user record, print the 32-bit FNV-1a hash of its email, acknowledge.
// Malformed input is rejected.
import { sluiceHandler, Reject } from "../../../guest-sdk/js/sluice.js";

function fnv1a32(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h;
}

const encoder = new TextEncoder();

export const handler = sluiceHandler((msg) => {
  const record = msg.json();
  if (typeof record?.email !== "string") throw new Reject("no email");
  console.log(`fnv1a=${fnv1a32(encoder.encode(record.email)).toString(16).padStart(8, "0")}`);
});
