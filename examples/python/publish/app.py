"""publish: fans an order out to the topics email and analytics through the
transactional outbox, keyed by order id. With FAIL_FIRST_ATTEMPT set,
attempt 1 publishes and then fails: what it published is discarded."""
import json
import os

import sluice


def handle(msg: sluice.Message) -> None:
    order = msg.json()
    if not isinstance(order, dict):
        raise sluice.Reject("not an order object")
    order_id = order.get("order_id")
    if isinstance(order_id, int) and not isinstance(order_id, bool) and order_id >= 0:
        order_id = str(order_id)
    if not isinstance(order_id, str):
        raise sluice.Reject("order_id is missing or not a string or integer")
    if order_id == "":
        raise sluice.Reject("order_id is empty")
    email = order.get("email")
    if not isinstance(email, str):
        raise sluice.Reject("email is missing or not a string")
    total = order.get("total")
    if not isinstance(total, (int, float)) or isinstance(total, bool):
        raise sluice.Reject("total is not a number")
    compact = {"separators": (",", ":")}
    sluice.publish("email", json.dumps({"order_id": order_id, "email": email}, **compact), key=order_id)
    event = {"event": "order_placed", "order_id": order_id, "total": total}
    sluice.publish("analytics", json.dumps(event, **compact), key=order_id)
    print(f"published order {order_id} to email and analytics")
    if msg.attempt == 1 and "FAIL_FIRST_ATTEMPT" in os.environ:
        raise sluice.Retry("failing after publishing, as FAIL_FIRST_ATTEMPT asks")


Handler = sluice.handler(handle)
