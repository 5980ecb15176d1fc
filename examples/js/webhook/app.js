// webhook: posts the payload to the handler's WEBHOOK_URL with `fetch`
// (wasi:http, under the handler's egress policy), with the message's
// idempotency key as the provider's Idempotency-Key (docs/idempotent-calls.md).
// 2xx acknowledges (prints "webhook <status> <body>"), a 4xx other than
// 408/429 rejects, anything else (5xx, a refused or failed request) retries.
// Redirects are left to fetch: each hop is a new request, checked like the first.
import { sluiceHandler, Reject, Retry } from "../../../guest-sdk/js/sluice.js";

export const handler = sluiceHandler(async (msg) => {
  const url = msg.env.WEBHOOK_URL;
  if (!url) throw new Retry("WEBHOOK_URL is not set");
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": msg.idempotencyKey },
      body: msg.payload,
    });
  } catch (e) {
    throw new Retry(`webhook request failed: ${e}`);
  }
  const body = await response.text();
  if (response.ok) {
    console.log(`webhook ${response.status} ${body}`);
    return;
  }
  const permanent = response.status >= 400 && response.status < 500 && ![408, 429].includes(response.status);
  if (permanent) throw new Reject(`webhook answered ${response.status}`);
  throw new Retry(`webhook answered ${response.status}`);
});
