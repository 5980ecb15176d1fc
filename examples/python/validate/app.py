"""validate: acknowledges valid JSON, rejects anything else (to the DLQ)."""
import sluice


def handle(msg: sluice.Message) -> None:
    msg.json()  # raises sluice.Reject if the payload is not JSON
    print(f"valid: {len(msg.payload)} bytes of JSON")


Handler = sluice.handler(handle)
