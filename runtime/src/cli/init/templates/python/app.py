"""{{name}}: a sluice handler (a component of the sluice:handler world, sluice.py)."""
import sluice


def handle(msg: sluice.Message) -> None:
    print(f"{{name}} handled {msg.id} on {msg.topic} (attempt {msg.attempt}, {len(msg.payload)} bytes)")


Handler = sluice.handler(handle)
