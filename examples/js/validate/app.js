// validate: acknowledges valid JSON, rejects anything else (to the DLQ).
import { sluiceHandler } from "../../../guest-sdk/js/sluice.js";

export const handler = sluiceHandler((msg) => {
  msg.json(); // throws Reject if the payload is not JSON
  console.log(`valid: ${msg.payload.length} bytes of JSON`);
});
