//! The binary as installed: `--version` names the guest interfaces, `--help`
//! lists every command with an example, and `completions` writes a script
//! for bash, zsh and fish that the shell itself accepts where it is installed.

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

#[test]
fn help_lists_every_command_with_an_example() {
    let help = ok(&sluice(&["--help"]));
    for command in [
        "serve",
        "migrate",
        "register",
        "handlers",
        "enqueue",
        "status",
        "attempts",
        "dlq",
        "replay",
        "stats",
        "run",
        "apply",
        "init",
        "openapi",
        "completions",
    ] {
        assert!(
            help.contains(&format!("\n  {command}")),
            "{command} not listed:\n{help}"
        );
        assert!(
            help.contains(&format!("  sluice {command}")),
            "no example of {command}:\n{help}"
        );
    }
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker, check) in [
        ("bash", "complete -F", Some(vec!["bash", "-n"])),
        ("zsh", "#compdef sluice", Some(vec!["zsh", "-n"])),
        (
            "fish",
            "complete -c sluice",
            Some(vec!["fish", "--no-execute"]),
        ),
    ] {
        let script = ok(&sluice(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["apply", "enqueue", "dlq", "completions"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
        // The shell's own syntax check, where the shell is installed.
        let Some(check) = check else { continue };
        let path = dir.path().join(format!("sluice.{shell}"));
        std::fs::write(&path, &script).unwrap();
        match std::process::Command::new(check[0])
            .args(&check[1..])
            .arg(&path)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} rejects its script: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("{shell} is not installed: its script is not syntax-checked");
            }
            Err(e) => panic!("{shell}: {e}"),
        }
    }
    let err = common::fails(&sluice(&["completions", "tcsh"]));
    assert!(err.contains("tcsh"), "{err}");
}
