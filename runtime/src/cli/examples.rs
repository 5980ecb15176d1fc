//! The examples `--help` prints: [`TOP`] under `sluice --help` (one line per
//! command), and one block per command under `sluice COMMAND --help`, with an
//! example of each of its subcommands. Unit tests (`cli::tests`) check that
//! every command and subcommand has one and that every `sluice ...` line here
//! parses.

/// Examples under `sluice --help`.
pub(super) const TOP: &str = "\
Examples:
  sluice serve                                   embedded server on 127.0.0.1:7777
  sluice init rust hello                         a handler project (rust c zig assemblyscript go python js)
  sluice apply -f hello/sluice.toml              build and register what the manifest names (handlers, schedules)
  sluice register resize --topic images --module resize.wasm --retries 3
  sluice handlers list                           (show, remove, pause, resume)
  sluice enqueue images '{\"id\":1}' --key user-7   prints the message id
  sluice status <message-id>                     its deliveries and attempts
  sluice attempts <delivery-id>
  sluice dlq list --handler resize               (show, replay, purge)
  sluice replay --handler resize --since 2026-01-01T00:00:00Z
  sluice schedules create nightly --cron '0 3 * * *' --topic reports   (list, show, pause, resume, trigger, remove)
  sluice stats                                   DLQ size, backlog and lag per handler
  sluice run resize.wasm '{\"id\":1}'             one local run in the sandbox, no server
  sluice migrate --store postgres://...          create or migrate a PostgreSQL store
  sluice openapi > openapi.json                  the HTTP API's OpenAPI document
  sluice completions bash > /etc/bash_completion.d/sluice

Every client command takes --url (SLUICE_URL), --token (SLUICE_TOKEN) and --json;
`sluice COMMAND --help` shows its options and examples.
Docs: docs/cli.md";

/// `sluice serve --help`.
pub(super) const SERVE: &str = "\
Examples:
  # embedded store in ./sluice-data, API and dashboard on 127.0.0.1:7777
  sluice serve
  # settings from a file, a token (required off loopback)
  sluice serve --config sluice-server.toml --listen 0.0.0.0:7777 --token s3cret
  # a PostgreSQL store shared by several runners
  sluice serve --store postgres://sluice@localhost/sluice --runner-id runner-1";

/// `sluice migrate --help`.
pub(super) const MIGRATE: &str = "\
Examples:
  sluice migrate --store postgres://sluice@localhost/sluice
  sluice migrate --config sluice-server.toml";

/// `sluice register --help`.
pub(super) const REGISTER: &str = "\
Examples:
  sluice register resize --topic images --module resize.wasm
  # policy fields not given take the server's defaults
  sluice register resize --topic images --module resize.wasm --timeout 10s --memory 128MiB --retries 3 --env MODE=fast
  # outbound HTTP to one origin
  sluice register hook --topic events --module hook.wasm --allow-origin https://api.example.com";

/// `sluice handlers --help`.
pub(super) const HANDLERS: &str = "\
Examples:
  sluice handlers list
  sluice handlers show resize --json
  sluice handlers pause resize
  sluice handlers resume resize
  # with all its deliveries, open and dead
  sluice handlers remove resize";

/// `sluice enqueue --help`.
pub(super) const ENQUEUE: &str = "\
Examples:
  sluice enqueue images '{\"id\":1}'
  sluice enqueue images --file event.json --key user-7 --idempotency-key upload-42
  sluice enqueue images '{\"id\":1}' --delay 10m --header source=cli
  # the payload from stdin
  echo '{\"id\":1}' | sluice enqueue images -";

/// `sluice status --help`.
pub(super) const STATUS: &str = "\
Examples:
  sluice status 0190e0e0-0000-7000-8000-000000000000
  sluice status 0190e0e0-0000-7000-8000-000000000000 --json";

/// `sluice attempts --help`.
pub(super) const ATTEMPTS: &str = "\
Examples:
  # a delivery id from `sluice status`
  sluice attempts 0190e0e0-0000-7000-8000-000000000001";

/// `sluice dlq --help`.
pub(super) const DLQ: &str = "\
Examples:
  sluice dlq list --handler resize --outcome trap
  sluice dlq show 0190e0e0-0000-7000-8000-000000000001
  sluice dlq replay 0190e0e0-0000-7000-8000-000000000001
  sluice dlq replay --handler resize --all --rate 10/s
  sluice dlq purge --handler resize --all --since 2026-01-01T00:00:00Z --yes";

/// `sluice replay --help`.
pub(super) const REPLAY: &str = "\
Examples:
  # every message on resize's topic enqueued since then, to resize again
  sluice replay --handler resize --since 2026-01-01T00:00:00Z";

/// `sluice schedules --help`.
pub(super) const SCHEDULES: &str = "\
Examples:
  sluice schedules create nightly --cron '0 3 * * *' --topic reports --tz Europe/London --data '{\"kind\":\"nightly\"}'
  sluice schedules create tick --cron '*/30 * * * * *' --topic jobs --overlap buffer-one --jitter 5s
  sluice schedules list
  sluice schedules show nightly
  sluice schedules pause nightly
  sluice schedules resume nightly
  sluice schedules trigger nightly
  sluice schedules remove nightly";

/// `sluice stats --help`.
pub(super) const STATS: &str = "\
Examples:
  sluice stats
  sluice stats --json";

/// `sluice run --help`.
pub(super) const RUN: &str = "\
Examples:
  sluice run resize.wasm '{\"id\":1}'
  sluice run resize.wasm --file event.json --timeout 5s --memory 32MiB --env MODE=fast --json
  # a recorded attempt again, with the module that ran, then with a fix
  sluice run --delivery 0190e0e0-0000-7000-8000-000000000001
  sluice run --delivery 0190e0e0-0000-7000-8000-000000000001 --module fixed.wasm";

/// `sluice apply --help`.
pub(super) const APPLY: &str = "\
Examples:
  # ./sluice.toml: its [[handler]] and [[schedule]] entries
  sluice apply
  # the plan only: create / update / unchanged / remove
  sluice apply -f examples/sluice.toml --dry-run
  # also remove what the manifest does not name, without asking
  sluice apply -f sluice.toml --prune --yes";

/// `sluice init --help`.
pub(super) const INIT: &str = "\
Examples:
  # ./hello: source, build.sh and sluice.toml; then `sluice apply -f hello/sluice.toml`
  sluice init rust hello
  sluice init python greeter --dir /tmp/greeter";

/// `sluice openapi --help`.
pub(super) const OPENAPI: &str = "\
Examples:
  sluice openapi > openapi.json";

/// `sluice completions --help`.
pub(super) const COMPLETIONS: &str = "\
Examples:
  sluice completions bash > ~/.local/share/bash-completion/completions/sluice
  sluice completions zsh > \"${fpath[1]}/_sluice\"
  sluice completions fish > ~/.config/fish/completions/sluice.fish";
