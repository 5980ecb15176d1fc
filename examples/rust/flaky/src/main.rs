//! `flaky`: fails with exit status 75 (retry) on attempts 1 and 2, then
//! succeeds on attempt 3, to show retries with backoff end in success.

use sluice_guest::{Error, Message, Result};

/// The first attempt that succeeds.
const SUCCEEDS_ON: u32 = 3;

fn handle(msg: &Message) -> Result {
    if msg.attempt() < SUCCEEDS_ON {
        return Err(Error::retry(format_args!(
            "flaky: attempt {} of {} fails on purpose",
            msg.attempt(),
            msg.max_attempts()
        )));
    }
    println!("flaky: succeeded on attempt {}", msg.attempt());
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_twice_then_acknowledges() {
        let at = |n| handle(&Message::new("t", "x").with_attempt(n, 5));
        assert_eq!(at(1).map_err(|e| e.exit_code()), Err(75));
        assert_eq!(at(2).map_err(|e| e.exit_code()), Err(75));
        assert_eq!(at(3), Ok(()));
        assert_eq!(at(4), Ok(()));
    }
}
