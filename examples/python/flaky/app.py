"""flaky: retries on attempts 1 and 2, then succeeds on attempt 3."""
import sluice

SUCCEEDS_ON = 3


def handle(msg: sluice.Message) -> None:
    if msg.attempt < SUCCEEDS_ON:
        raise sluice.Retry(f"flaky: attempt {msg.attempt} of {msg.max_attempts} fails on purpose")
    print(f"flaky: succeeded on attempt {msg.attempt}")


Handler = sluice.handler(handle)
