"""ack: acknowledges every message, after printing one line about it."""
import sluice


def handle(msg: sluice.Message) -> None:
    print(f"ack topic={msg.topic} id={msg.id} attempt={msg.attempt} bytes={len(msg.payload)}")


Handler = sluice.handler(handle)
