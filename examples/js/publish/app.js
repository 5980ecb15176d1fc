// publish: fans an order out to the topics email and analytics through the
// transactional outbox, keyed by order id. With FAIL_FIRST_ATTEMPT set in the
// handler's environment, attempt 1 publishes and then fails: what it
// published is discarded.
import { sluiceHandler, publish, Reject, Retry } from "../../../guest-sdk/js/sluice.js";

export const handler = sluiceHandler((msg) => {
  const order = msg.json();
  if (order === null || typeof order !== "object" || Array.isArray(order)) {
    throw new Reject("not an order object");
  }
  let id = order.order_id;
  if (Number.isInteger(id) && id >= 0) id = String(id);
  if (typeof id !== "string") throw new Reject("order_id is missing or not a string or integer");
  if (id === "") throw new Reject("order_id is empty");
  if (typeof order.email !== "string") throw new Reject("email is missing or not a string");
  if (typeof order.total !== "number") throw new Reject("total is not a number");
  publish("email", JSON.stringify({ order_id: id, email: order.email }), { key: id });
  publish("analytics", JSON.stringify({ event: "order_placed", order_id: id, total: order.total }), { key: id });
  console.log(`published order ${id} to email and analytics`);
  if (msg.attempt === 1 && "FAIL_FIRST_ATTEMPT" in msg.env) {
    throw new Retry("failing after publishing, as FAIL_FIRST_ATTEMPT asks");
  }
});
