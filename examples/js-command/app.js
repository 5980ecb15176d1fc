// command: a wasi:cli command component. Prints its metadata from the WASI
// environment; fails (`run` returns err: exit 1, retried) on attempt 1 and
// succeeds from attempt 2 on.
import { getEnvironment } from "wasi:cli/environment@0.2.12";

export const run = {
  run() {
    const env = Object.fromEntries(getEnvironment());
    console.log(`command topic=${env.SLUICE_TOPIC} id=${env.SLUICE_MESSAGE_ID} attempt=${env.SLUICE_ATTEMPT}`);
    if (env.SLUICE_ATTEMPT === "1") {
      throw new Error("command: attempt 1 fails on purpose");
    }
  },
};
