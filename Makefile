# The two commands of the quick start, and a few more. Each installs what it needs.
.PHONY: demo test examples lint bench crash fuzz

demo:            ## Build the example handlers and sluice, run an embedded server through a scenario.
	scripts/demo.sh

test:            ## Every test: unit, conformance, property, crash, sandbox, API, CLI, languages.
	scripts/test.sh

examples:        ## Build every example handler to target/examples/<lang>/<name>.wasm.
	scripts/build-examples.sh

fuzz:            ## schemathesis against a real server for 15 minutes (make test runs it for 2), every check on.
	SCHEMATHESIS_MAX_TIME=900 SCHEMATHESIS_MAX_EXAMPLES=1000 scripts/schemathesis.sh

crash:           ## The crash harness (SIGKILL a real server 200 times under load), the multi-runner PostgreSQL fault test (60 kills), then 10,000 simulated power cuts.
	scripts/crash.sh

lint:            ## Formatting, clippy and docs, as CI runs them.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
