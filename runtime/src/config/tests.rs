use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Every key of every section, each away from its default.
const FULL: &str = r#"
[server]
data_dir = "/var/lib/sluice"
grace = "45s"
log_format = "json"

[api]
listen = "0.0.0.0:8080"
token = "s3cret"
read_token = "l00k"
ui = false

[store]
type = "embedded"
max_payload_bytes = "2MiB"
max_topic_depth = 5000
max_headers = 8
idempotency_window = "1h"
message_retention = "2days"
dlq_retention = "3days"
checkpoint_bytes = "128MiB"
group_commit_window = "2ms"

[runner]
poll_interval = "2s"
promote_interval = "20ms"
rescue_interval = "3s"
prune_interval = "5m"
handler_interval = 4

[sandbox]
pool_instances = 16
max_memory_bytes = "1GiB"
epoch_tick = "2ms"
cache_dir = "/tmp/sluice-cache"
stdout_cap = "16KiB"
stderr_cap = 1024
fuel = true
max_wasm_stack = "256KiB"
compile_timeout = "5m"
"#;

fn path() -> &'static Path {
    Path::new("/etc/sluice.toml")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, path())
}

/// The error's text, asserting it names the file and `key`.
fn refused(text: &str, key: &str) -> String {
    let e = parse(text).expect_err("refused").to_string();
    assert!(e.contains("/etc/sluice.toml"), "names the file: {e}");
    assert!(e.contains(key), "names {key}: {e}");
    e
}

#[test]
fn every_section_is_read_into_the_running_configuration() {
    let c = parse(FULL).unwrap();
    assert_eq!(
        c.server,
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/sluice"),
            grace: Duration::from_secs(45),
            log_format: LogFormat::Json,
        }
    );
    assert_eq!(
        c.api,
        ApiConfig {
            listen: "0.0.0.0:8080".parse::<SocketAddr>().unwrap(),
            token: Some("s3cret".into()),
            read_token: Some("l00k".into()),
            ui: false,
        }
    );
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        c.store,
        StoreSettings {
            backend: StoreBackend::Embedded(EmbeddedSettings {
                checkpoint_bytes: 128 << 20,
                group_commit_window: Duration::from_millis(2),
            }),
            config: StoreConfig {
                max_payload_bytes: 2 << 20,
                max_topic_depth: 5000,
                max_headers: 8,
                idempotency_window: Duration::from_secs(3600),
                message_retention: 2 * day,
                dlq_retention: 3 * day,
            },
        }
    );
    let r = &c.runner;
    assert_eq!(r.poll_interval, Duration::from_secs(2));
    assert_eq!(r.promote_interval, Duration::from_millis(20));
    assert_eq!(r.rescue_interval, Duration::from_secs(3));
    assert_eq!(r.prune_interval, Duration::from_secs(300));
    assert_eq!(
        r.handler_interval,
        Duration::from_secs(4),
        "integer = seconds"
    );
    let x = &c.sandbox;
    assert_eq!(x.pool_instances, 16);
    assert_eq!(x.max_memory_bytes, 1 << 30);
    assert_eq!(x.epoch_tick, Duration::from_millis(2));
    assert_eq!(x.cache_dir, Some(PathBuf::from("/tmp/sluice-cache")));
    assert_eq!(x.stdout_cap, 16 << 10);
    assert_eq!(x.stderr_cap, 1024, "integer = bytes");
    assert!(x.fuel);
    assert_eq!(x.max_wasm_stack, 256 << 10);
    assert_eq!(x.compile_timeout, Duration::from_secs(300));
}

#[test]
fn an_empty_file_and_no_file_keep_every_default() {
    let defaults = Config::default();
    for c in [
        parse("").unwrap(),
        Config::load(None, &Overrides::default()).unwrap(),
    ] {
        assert_eq!(c.server, defaults.server);
        assert_eq!(c.api, defaults.api);
        assert_eq!(c.store, defaults.store);
        assert_eq!(c.runner.prune_interval, defaults.runner.prune_interval);
        assert_eq!(c.sandbox.pool_instances, 256, "one pool default");
    }
    let c = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(
        c.sandbox.cache_dir,
        Some(PathBuf::from("sluice-data/module-cache")),
        "the cache follows the data directory"
    );
}

#[test]
fn flags_and_environment_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, FULL).unwrap();
    let overrides = Overrides {
        data_dir: Some(PathBuf::from("/srv/data")),
        listen: Some("127.0.0.1:9000".parse().unwrap()),
        token: Some("other".into()),
        grace: Some(Duration::from_secs(1)),
        pool_instances: Some(3),
        log_format: Some(LogFormat::Text),
        store: None,
        runner_id: None,
        read_token: Some("peek".into()),
        no_ui: false,
    };
    let c = Config::load(Some(&file), &overrides).unwrap();
    assert_eq!(c.api.read_token.as_deref(), Some("peek"));
    assert!(!c.api.ui, "the file's ui = false stands without --no-ui");
    assert_eq!(c.server.data_dir, PathBuf::from("/srv/data"));
    assert_eq!(c.server.grace, Duration::from_secs(1));
    assert_eq!(c.server.log_format, LogFormat::Text);
    assert_eq!(c.api.listen.port(), 9000);
    assert_eq!(c.api.token.as_deref(), Some("other"));
    assert_eq!(c.sandbox.pool_instances, 3);
    assert_eq!(
        c.store.config.max_topic_depth, 5000,
        "the file beats defaults"
    );
    assert_eq!(
        c.sandbox.cache_dir,
        Some(PathBuf::from("/tmp/sluice-cache"))
    );

    let c = Config::load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(
        c.sandbox.pool_instances, 16,
        "no override: the file's value"
    );
}

/// Flags parse into [`Overrides`] (their `SLUICE_*` variables too, which
/// `tests/serve.rs` sets on the real binary) and beat the file.
#[test]
fn parsed_flags_beat_the_file() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        overrides: Overrides,
    }
    let cmd = Cmd::try_parse_from(["serve", "--pool-instances", "7", "--grace", "2s"]).unwrap();
    let mut c = parse(FULL).unwrap();
    c.apply(&cmd.overrides);
    assert_eq!(c.sandbox.pool_instances, 7);
    assert_eq!(c.server.grace, Duration::from_secs(2));
    assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/sluice"), "kept");
}

#[test]
fn an_unknown_key_is_refused_naming_section_key_and_file() {
    let e = refused("[store]\nmax_topic_dept = 5\n", "[store] max_topic_dept");
    assert!(e.contains("unknown field"), "{e}");
    assert!(e.contains("max_topic_depth"), "lists the known keys: {e}");
    assert!(e.contains("line 2"), "{e}");
    refused("[sandbox]\npool = 5\n", "[sandbox] pool");
}

#[test]
fn an_unknown_section_is_refused() {
    let e = refused("[storage]\ntype = \"embedded\"\n", "[storage]");
    assert!(e.contains("unknown section"), "{e}");
    let e = refused("data_dir = \"x\"\n", "[data_dir]");
    assert!(e.contains("unknown section"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let e = refused(
        "[store]\nmax_topic_depth = \"many\"\n",
        "[store] max_topic_depth",
    );
    assert!(e.contains("invalid type"), "{e}");
    let e = refused(
        "[runner]\npoll_interval = \"soon\"\n",
        "[runner] poll_interval",
    );
    assert!(e.contains("soon"), "{e}");
    refused(
        "[sandbox]\nmax_memory_bytes = \"lots\"\n",
        "[sandbox] max_memory_bytes",
    );
    refused("[api]\nlisten = \"nowhere\"\n", "[api] listen");
    refused("[server]\nlog_format = \"xml\"\n", "[server] log_format");
    refused("[sandbox]\nfuel = 1\n", "[sandbox] fuel");
    refused(
        "[store]\nmax_payload_bytes = -1\n",
        "[store] max_payload_bytes",
    );
}

#[test]
fn a_value_out_of_bounds_is_refused() {
    let e = refused(
        "[store]\nmax_payload_bytes = \"1GiB\"\n",
        "[store] max_payload_bytes",
    );
    assert!(e.contains("64 MiB"), "{e}");
    refused(
        "[store]\nmax_payload_bytes = 0\n",
        "[store] max_payload_bytes",
    );
    refused("[store]\nmax_topic_depth = 0\n", "[store] max_topic_depth");
    refused(
        "[store]\ncheckpoint_bytes = \"4KiB\"\n",
        "[store] checkpoint_bytes",
    );
    refused(
        "[store]\ngroup_commit_window = \"5s\"\n",
        "[store] group_commit_window",
    );
    refused(
        "[runner]\npromote_interval = \"0s\"\n",
        "[runner] promote_interval",
    );
    let e = refused(
        "[sandbox]\npool_instances = 0\n",
        "[sandbox] pool_instances",
    );
    assert!(e.contains("must be"), "{e}");
    let e = refused(
        "[sandbox]\nmax_memory_bytes = \"8GiB\"\n",
        "[sandbox] max_memory_bytes",
    );
    assert!(e.contains("must be"), "{e}");
    let e = refused("[sandbox]\nepoch_tick = \"1s\"\n", "[sandbox] epoch_tick");
    assert!(e.contains("must be"), "{e}");
}

#[test]
fn an_out_of_bounds_override_names_the_command_line() {
    let overrides = Overrides {
        pool_instances: Some(0),
        ..Overrides::default()
    };
    let e = Config::load(None, &overrides).unwrap_err().to_string();
    assert!(e.contains("command line or environment"), "{e}");
    assert!(e.contains("[sandbox] pool_instances"), "{e}");
}

#[test]
fn an_unknown_store_type_is_refused() {
    let e = refused("[store]\ntype = \"nats\"\n", "[store] type");
    assert!(e.contains("postgres") && e.contains("embedded"), "{e}");
}

#[test]
fn a_missing_or_unreadable_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Config::load(Some(&missing), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read config file"), "{e}");
    assert!(e.contains("nope.toml"), "{e}");
    let source = std::error::Error::source(
        &Config::load(Some(&missing), &Overrides::default()).unwrap_err(),
    )
    .map(ToString::to_string);
    assert!(
        source.is_some_and(|s| s.contains("No such file")),
        "the reason is its source"
    );
    let e = Config::load(Some(dir.path()), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read config file"), "a directory: {e}");
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let e = Config::load(Some(&binary), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("binary.toml"), "not UTF-8: {e}");
}

#[test]
fn malformed_toml_is_refused_with_its_line() {
    let e = parse("[store\nmax_topic_depth = 5\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/sluice.toml") && e.contains("malformed TOML"),
        "{e}"
    );
    assert!(e.contains("line 1"), "{e}");
    let e = parse("[store]\nmax_topic_depth = = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
}

/// The annotated example in docs/configuration.md is a valid file.
#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../../docs/configuration.md");
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    let c = parse(example).unwrap();
    assert_eq!(c.store.config.max_payload_bytes, 256 << 10);
    assert_eq!(c.sandbox.pool_instances, 64);
}

#[test]
fn postgres_store_is_read_with_its_own_keys() {
    let c = parse(
        "[store]\ntype = \"postgres\"\nurl = \"postgres://u@db:5432/q\"\npool_size = 4\n\
         schema = \"jobs\"\nrunner_id = \"r1\"\nmax_topic_depth = 10\n",
    )
    .unwrap();
    assert_eq!(
        c.store.backend,
        StoreBackend::Postgres(PgSettings {
            url: "postgres://u@db:5432/q".into(),
            pool_size: 4,
            schema: "jobs".into(),
            runner_id: Some("r1".into()),
        })
    );
    assert_eq!(c.store.config.max_topic_depth, 10);
    let d = parse("[store]\ntype = \"postgres\"\nurl = \"postgres://db/q\"\n").unwrap();
    assert_eq!(
        d.store.backend,
        StoreBackend::Postgres(PgSettings::with_url("postgres://db/q".into()))
    );
}

#[test]
fn a_backends_keys_are_refused_for_the_other() {
    refused("[store]\nurl = \"postgres://db/q\"\n", "[store] url");
    refused(
        "[store]\ntype = \"postgres\"\nurl = \"postgres://db/q\"\ncheckpoint_bytes = \"8MiB\"\n",
        "[store] checkpoint_bytes",
    );
    refused("[store]\ntype = \"postgres\"\n", "[store] url");
    refused(
        "[store]\ntype = \"postgres\"\nurl = \"postgres://db/q\"\npool_size = 0\n",
        "[store] pool_size",
    );
    refused(
        "[store]\ntype = \"postgres\"\nurl = \"postgres://db/q\"\nschema = \"Bad-Name\"\n",
        "[store] schema",
    );
}

#[test]
fn store_flag_picks_the_backend() {
    assert!(parse_store("mysql://x").is_err());
    let overrides = Overrides {
        store: Some(parse_store("postgres://u@h:1/d").unwrap()),
        runner_id: Some("r9".into()),
        ..Overrides::default()
    };
    let c = Config::load(None, &overrides).unwrap();
    let StoreBackend::Postgres(pg) = c.store.backend else {
        panic!("--store postgres:// picks PostgreSQL")
    };
    assert_eq!(pg.url, "postgres://u@h:1/d");
    assert_eq!(pg.runner_id.as_deref(), Some("r9"));
    assert_eq!(pg.schema, "sluice");
}
