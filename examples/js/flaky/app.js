// flaky: retries on attempts 1 and 2, then succeeds on attempt 3.
import { sluiceHandler, Retry } from "../../../guest-sdk/js/sluice.js";

const SUCCEEDS_ON = 3;

export const handler = sluiceHandler((msg) => {
  if (msg.attempt < SUCCEEDS_ON) {
    throw new Retry(`flaky: attempt ${msg.attempt} of ${msg.maxAttempts} fails on purpose`);
  }
  console.log(`flaky: succeeded on attempt ${msg.attempt}`);
});
