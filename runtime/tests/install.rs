//! The binary as installed: `--version` names the guest interfaces, `--help`
//! lists every command with an example (and each command's `--help` its
//! own), and `completions` writes a script for bash, zsh and fish that the
//! real shell loads and completes from (`sluice sch<TAB>` → `schedules`).
//! A shell that is not installed fails the test under `CI=true`
//! (scripts/install-shells.sh installs them).

mod common;
use common::{ok, sluice};

#[test]
fn version_names_the_guest_abi_versions() {
    let out = ok(&sluice(&["--version"]));
    assert!(
        out.starts_with(&format!("sluice {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("guest ABI 1"), "{out}");
    assert!(out.contains("sluice:handler@1.0.0"), "{out}");
}

/// `sluice --help` lists every command (as the binary defines them) with an
/// example, and `sluice COMMAND --help` ends with its own examples.
#[test]
fn help_lists_every_command_with_an_example() {
    use clap::CommandFactory as _;
    let help = ok(&sluice(&["--help"]));
    let cli = sluice::cli::Cli::command();
    let commands: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    for must in ["schedules", "apply", "init", "run", "completions"] {
        assert!(commands.contains(&must), "{commands:?}");
    }
    for command in commands {
        assert!(
            help.contains(&format!("\n  {command}")),
            "{command} not listed:\n{help}"
        );
        assert!(
            help.contains(&format!("  sluice {command}")),
            "no example of {command}:\n{help}"
        );
        let own = ok(&sluice(&[command, "--help"]));
        assert!(
            own.contains("\nExamples:\n") && own.contains(&format!("  sluice {command}")),
            "`sluice {command} --help` has no example:\n{own}"
        );
    }
}

/// `script` as `shell` loads it (`check` prints what the test asserts on),
/// or `None` when the shell is not installed outside CI (under `CI=true` a
/// missing shell fails: scripts/install-shells.sh installs them).
fn in_shell(shell: &str, args: &[&str]) -> Option<String> {
    match std::process::Command::new(shell).args(args).output() {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{shell} {args:?} failed ({}): {stderr}",
                out.status
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{shell} is not installed: CI must check its completions \
                 (scripts/install-shells.sh installs bash, zsh and fish)"
            );
            eprintln!(
                "SKIPPED: {shell} is not installed (scripts/install-shells.sh): its completion \
                 script is generated but not loaded"
            );
            None
        }
        Err(e) => panic!("{shell}: {e}"),
    }
}

/// The generated script, written where the shell can load it.
fn script(dir: &std::path::Path, shell: &str, marker: &str) -> String {
    let script = ok(&sluice(&["completions", shell]));
    assert!(script.contains(marker), "{shell}: {script}");
    let path = dir.join(format!("sluice.{shell}"));
    std::fs::write(&path, &script).unwrap();
    path.to_str().unwrap().to_string()
}

/// Candidates are listed one per line: each expected one must be a line
/// (before a tab, for fish's descriptions).
fn assert_candidates(shell: &str, line: &str, out: &str, expected: &[&str]) {
    let got: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(l).trim())
        .collect();
    for want in expected {
        assert!(
            got.contains(want),
            "{shell}: completing {line:?} offers no {want:?}: {got:?}"
        );
    }
}

#[test]
fn bash_completes_subcommands_and_their_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "bash", "complete -F");
    // The script sourced into a clean bash, its function called as
    // readline would for `sluice sch<TAB>` and `sluice schedules <TAB>`.
    for (words, expected) in [
        ("sluice sch", &["schedules"][..]),
        ("sluice a", &["apply", "attempts"][..]),
        (
            "sluice schedules ",
            &["create", "list", "trigger", "remove"][..],
        ),
        ("sluice apply --p", &["--prune"][..]),
    ] {
        let program = format!(
            "set -e; source {file}; complete -p sluice >/dev/null; \
             COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             read -r -a COMP_WORDS <<< \"$COMP_LINE\"; \
             [[ \"$COMP_LINE\" == *' ' ]] && COMP_WORDS+=(''); \
             COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
             _sluice sluice \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let Some(out) = in_shell("bash", &["--norc", "--noprofile", "-c", &program]) else {
            return;
        };
        assert_candidates("bash", words, &out, expected);
    }
}

#[test]
fn zsh_loads_the_script_after_compinit() {
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "zsh", "#compdef sluice");
    // `zsh -f`: no startup files. compinit first (the script calls compdef),
    // then the script sourced: sluice's completer is `_sluice`, a function.
    let program = format!(
        "autoload -Uz compinit && compinit -u -d {dir}/zcompdump && source {file} && \
         print -r -- \"comp=${{_comps[sluice]}}\" && whence -w _sluice",
        dir = dir.path().display()
    );
    let Some(out) = in_shell("zsh", &["-f", "-c", &program]) else {
        return;
    };
    assert!(out.contains("comp=_sluice\n"), "{out}");
    assert!(out.contains("_sluice: function"), "{out}");
}

#[test]
fn fish_completes_subcommands_and_their_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "fish", "complete -c sluice");
    if in_shell("fish", &["--no-execute", &file]).is_none() {
        return;
    }
    for (line, expected) in [
        ("sluice sch", &["schedules"][..]),
        ("sluice a", &["apply", "attempts"][..]),
        (
            "sluice schedules ",
            &["create", "list", "trigger", "remove"][..],
        ),
        ("sluice apply --p", &["--prune"][..]),
    ] {
        let program = format!("source {file}; complete -C '{line}'");
        let out = in_shell("fish", &["--no-config", "-c", &program]).expect("fish ran above");
        assert_candidates("fish", line, &out, expected);
    }
}

#[test]
fn completions_name_every_subcommand_and_refuse_other_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&sluice(&["completions", shell]));
        for sub in [
            "apply",
            "enqueue",
            "dlq",
            "schedules",
            "init",
            "run",
            "completions",
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let err = common::fails(&sluice(&["completions", "tcsh"]));
    assert!(err.contains("tcsh"), "{err}");
}
