"""W2's peer: Celery's native (unsandboxed) Python workers on W1's workload.

20,000 messages of ~128 B JSON; the task parses the record and computes the
32-bit FNV-1a of its email, exactly as examples/python/w1 does. Redis is the
broker; tasks are acknowledged late (after they ran, Celery's at-least-once
setting), prefetch 1 per process. The broker does not fsync before an
acknowledgement (Redis' default `appendfsync everysec`), so the peer pays less
for durability than sluice does.

The messages are enqueued while the worker consumes another queue; the drain is
timed from `add_consumer` to the last task's counter increment.

Run through scripts/peers/celery-w1.sh; prints one SYSTEM=celery line.
"""
import json
import os
import sys
import time

from celery import Celery

BROKER = os.environ.get("W2_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("w1", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)

_redis = None


def redis():
    global _redis
    if _redis is None:
        import redis as r

        _redis = r.Redis.from_url(BROKER)
    return _redis


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


@app.task(name="w1")
def w1(payload: str) -> None:
    record = json.loads(payload)
    print(f"fnv1a={fnv1a32(record['email'].encode()):08x}")
    redis().incr("w1:done")


def payload(i: int) -> str:
    p = f'{{"user_id":{i},"email":"user{i}@example.com","seq":{i},"pad":"'
    return p + "x" * max(0, 126 - len(p)) + '"}'


def drive(n: int) -> None:
    redis().delete("w1:done")
    with app.producer_or_acquire() as producer:
        for i in range(n):
            w1.apply_async((payload(i),), queue="w1", producer=producer)
    start = time.monotonic()
    app.control.add_consumer("w1", reply=True, timeout=10)
    while int(redis().get("w1:done") or 0) < n:
        time.sleep(0.005)
    wall = time.monotonic() - start
    procs = os.environ.get("W2_PROCS", "?")
    print(
        f"SYSTEM=celery drain_jps={n / wall:.0f} "
        f'settings="n={n} prefork={procs} acks_late prefetch=1 broker=redis appendfsync=everysec"'
    )


if __name__ == "__main__":
    drive(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
