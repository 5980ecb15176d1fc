"""w1: the benchmark's workload (docs/benchmarks.md, W2): parse a small JSON
user record, print the 32-bit FNV-1a hash of its email, acknowledge.
Malformed input is rejected."""
import sluice


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def handle(msg: sluice.Message) -> None:
    record = msg.json()
    email = record.get("email") if isinstance(record, dict) else None
    if not isinstance(email, str):
        raise sluice.Reject("no email")
    print(f"fnv1a={fnv1a32(email.encode()):08x}")


Handler = sluice.handler(handle)
