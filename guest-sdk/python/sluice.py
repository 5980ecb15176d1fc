"""The Python guest SDK for sluice handlers (the sluice:handler@1.0.0 world,
guest-sdk/wit, docs/guest-sdk.md "Python").

A handler is a module built into a component by componentize-py:

    import sluice

    def handle(msg: sluice.Message) -> None:
        order = msg.json()                     # raises Reject if not JSON
        sluice.publish("email", b"...", key=order["id"])

    Handler = sluice.handler(handle)

Returning normally acknowledges the message; ``raise sluice.Reject(reason)``
sends it to the dead-letter queue with no retry; ``raise sluice.Retry(reason)``
(or any other exception, whose traceback goes to stderr) retries it with
backoff. ``print()`` output is the attempt's stdout. Each attempt runs in a
fresh instance: module-level state never carries over between attempts.
"""

import json as _json
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

__all__ = ["Message", "Reject", "Retry", "PublishError", "publish", "log", "handler"]


class Reject(Exception):
    """A permanent failure: no retry, the message goes to the DLQ."""


class Retry(Exception):
    """A temporary failure: retried with backoff while attempts remain."""


class PublishError(Exception):
    """A refused publish; ``kind`` is the WIT case, e.g. ``"outbox-full"``."""

    def __init__(self, kind: str):
        super().__init__(f"sluice publish refused: {kind}")
        self.kind = kind


@dataclass
class Message:
    """One delivery."""

    id: str
    topic: str
    handler: str
    idempotency_key: str
    ordering_key: Optional[str]
    attempt: int
    max_attempts: int
    enqueued_at: str
    headers: Dict[str, str]
    env: Dict[str, str]
    payload: bytes

    def text(self) -> str:
        """The payload as UTF-8 text; raises Reject if it is not UTF-8."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Reject(f"payload is not UTF-8: {e}") from None

    def json(self) -> Any:
        """The payload parsed as strict JSON; raises Reject if it is not."""

        def refuse(name: str) -> Any:
            raise ValueError(f"{name} is not JSON")

        try:
            return _json.loads(self.text(), parse_constant=refuse)
        except ValueError as e:
            raise Reject(f"payload is not valid JSON: {e}") from None


_ERRORS = {
    host.PublishError_InvalidTopic: "invalid-topic",
    host.PublishError_PayloadTooLarge: "payload-too-large",
    host.PublishError_OutboxFull: "outbox-full",
    host.PublishError_InvalidKey: "invalid-key",
    host.PublishError_InvalidDelay: "invalid-delay",
}


def publish(topic: str, payload: bytes, key: Optional[str] = None, delay_ms: int = 0) -> None:
    """Buffers a message in the attempt's outbox (committed only if the attempt
    succeeds); raises PublishError if sluice refuses it."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    try:
        host.publish(topic, payload, key, delay_ms)
    except Err as e:
        raise PublishError(_ERRORS.get(type(e.value), repr(e.value))) from None


_LEVELS = {
    "trace": host.Level.TRACE,
    "debug": host.Level.DEBUG,
    "info": host.Level.INFO,
    "warn": host.Level.WARN,
    "error": host.Level.ERROR,
}


def log(message: str, level: str = "info") -> None:
    """Adds a line to the attempt's log (``level``: trace … error)."""
    host.log(_LEVELS[level], message)


def handler(handle: Callable[[Message], None]) -> type:
    """The ``Handler`` class componentize-py exports, calling ``handle``."""

    class Handler(exports.Handler):
        def handle(self, msg: types.Message) -> None:
            m = Message(
                id=msg.id,
                topic=msg.topic,
                handler=msg.handler,
                idempotency_key=msg.idempotency_key,
                ordering_key=msg.ordering_key,
                attempt=msg.attempt,
                max_attempts=msg.max_attempts,
                enqueued_at=msg.enqueued_at,
                headers=dict(msg.headers),
                env=dict(msg.env),
                payload=bytes(msg.payload),
            )
            try:
                handle(m)
            except Reject as e:
                raise Err(types.HandleError_Reject(str(e)))
            except Retry as e:
                raise Err(types.HandleError_Retry(str(e)))
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                raise Err(types.HandleError_Retry(f"{type(e).__name__}: {e}"))

    return Handler
