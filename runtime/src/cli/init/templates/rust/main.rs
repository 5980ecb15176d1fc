//! {{name}}: a sluice handler (a plain WASI command, no SDK needed).
//! The payload is stdin, the metadata SLUICE_* variables; exit 0 acknowledges,
//! 65 rejects (straight to the DLQ), anything else is retried.
use std::io::Read;

fn main() {
    let mut payload = Vec::new();
    if std::io::stdin().read_to_end(&mut payload).is_err() {
        std::process::exit(75);
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    println!(
        "{{name}} handled {} on {} (attempt {}, {} bytes)",
        var("SLUICE_MESSAGE_ID"),
        var("SLUICE_TOPIC"),
        var("SLUICE_ATTEMPT"),
        payload.len()
    );
}
