//! `sluice init <lang> <name>`: a handler project to start from, in a new
//! directory `<name>`: the handler's source, the guest SDK it uses (copied,
//! so the project stands alone), `build.sh`, and a `sluice.toml` whose one
//! entry builds and registers it on topic `<name>`:
//!
//! ```text
//! sluice init rust hello && sluice apply -f hello/sluice.toml && sluice enqueue hello '{}'
//! ```
//!
//! Each language's toolchain is the one `scripts/install-toolchains.sh`
//! pins; `build.sh` names it and takes an override from the environment
//! (`ZIG`, `GO`, `COMPONENTIZE_PY`, `COMPONENTIZE_JS`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::names::validate_handler;

/// The languages `init` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, a plain WASI command (no SDK needed).
    Rust,
    /// C through `zig cc`, with `sluice.h`.
    C,
    /// Zig, with `sluice.zig`.
    Zig,
    /// AssemblyScript with its WASI shim, with `sluice.ts`.
    #[value(alias = "as")]
    Assemblyscript,
    /// Go's wasip1 port, with the Go SDK.
    Go,
    /// Python, a component built by componentize-py, with `sluice.py`.
    Python,
    /// JavaScript, a component built by componentize-js, with `sluice.js`.
    Js,
}

/// `sluice init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The handler's language.
    lang: Lang,
    /// The handler's name, also its directory and topic (`[a-z0-9][a-z0-9._-]{0,127}`).
    name: String,
    /// Where to create the project [default: `./<name>`].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// A file of a project: its path in the project and its text, `{{name}}`
/// standing for the handler's name.
type Template = (&'static str, &'static str);

macro_rules! templates {
    ($lang:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("templates/", $lang, "/", $file)))),*]
    };
}

/// The project files of `lang`.
fn files(lang: Lang) -> &'static [Template] {
    match lang {
        Lang::Rust => templates!("rust": "build.sh", "Cargo.toml", "main.rs"),
        Lang::C => templates!("c": "build.sh", "main.c"),
        Lang::Zig => templates!("zig": "build.sh", "main.zig"),
        Lang::Assemblyscript => {
            templates!("assemblyscript": "build.sh", "index.ts", "asconfig.json", "package.json")
        }
        Lang::Go => templates!("go": "build.sh", "main.go", "go.mod"),
        Lang::Python => templates!("python": "build.sh", "app.py"),
        Lang::Js => templates!("js": "build.sh", "app.js"),
    }
}

/// The guest SDK files `lang` uses, copied into the project as they are.
fn sdk(lang: Lang) -> &'static [Template] {
    const WIT: Template = (
        "wit/handler.wit",
        include_str!("../../../../guest-sdk/wit/handler.wit"),
    );
    match lang {
        Lang::Rust => &[],
        Lang::C => &[("sluice.h", include_str!("../../../../guest-sdk/c/sluice.h"))],
        Lang::Zig => &[(
            "sluice.zig",
            include_str!("../../../../guest-sdk/zig/sluice.zig"),
        )],
        Lang::Assemblyscript => &[(
            "sluice.ts",
            include_str!("../../../../guest-sdk/assemblyscript/sluice.ts"),
        )],
        Lang::Go => &[
            (
                "sluice/go.mod",
                include_str!("../../../../guest-sdk/go/go.mod"),
            ),
            (
                "sluice/sluice.go",
                include_str!("../../../../guest-sdk/go/sluice.go"),
            ),
        ],
        Lang::Python => &[
            (
                "sluice.py",
                include_str!("../../../../guest-sdk/python/sluice.py"),
            ),
            WIT,
        ],
        Lang::Js => &[
            (
                "sluice.js",
                include_str!("../../../../guest-sdk/js/sluice.js"),
            ),
            WIT,
        ],
    }
}

/// Where a project's source goes (Rust's in `src/`).
fn place(lang: Lang, file: &str) -> String {
    match (lang, file) {
        (Lang::Rust, "main.rs") => "src/main.rs".into(),
        _ => file.into(),
    }
}

/// The manifest of a new project: one handler on topic `name`, built by `build.sh`.
pub fn manifest(name: &str) -> String {
    format!(
        "# The handlers of this project: `sluice apply -f sluice.toml` builds and\n\
         # registers them (docs/cli.md, \"apply\"). Every policy field is optional.\n\
         [[handler]]\n\
         name = \"{name}\"\n\
         topic = \"{name}\"\n\
         build = \"./build.sh\"\n\
         module = \"{name}.wasm\"\n\
         timeout = \"30s\"\n\
         retries = 5\n"
    )
}

/// Runs `sluice init`: writes the project; refuses a directory that exists.
pub fn init(a: InitArgs) -> anyhow::Result<()> {
    validate_handler(&a.name).with_context(|| "the name is the handler's")?;
    let dir = a.dir.unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() {
        anyhow::bail!("{} exists; choose another name or --dir", dir.display());
    }
    let mut written = Vec::new();
    for (file, text) in files(a.lang) {
        let path = dir.join(place(a.lang, file));
        write(&path, &text.replace("{{name}}", &a.name))?;
        written.push(path);
    }
    for (file, text) in sdk(a.lang) {
        let path = dir.join(file);
        write(&path, text)?;
        written.push(path);
    }
    write(&dir.join("sluice.toml"), &manifest(&a.name))?;
    make_executable(&dir.join("build.sh"))?;
    println!(
        "created {} ({} handler {}): build.sh, sluice.toml and {} more files\n\
         next: sluice apply -f {}/sluice.toml && sluice enqueue {} '{{}}'",
        dir.display(),
        a.lang
            .to_possible_value()
            .expect("no variant is skipped")
            .get_name(),
        a.name,
        written.len() - 1,
        dir.display(),
        a.name
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_build_script_and_its_manifest_parses() {
        for lang in Lang::value_variants() {
            assert!(
                files(*lang).iter().any(|(f, _)| *f == "build.sh"),
                "{lang:?}"
            );
        }
        let m = crate::cli::apply::manifest::Manifest::parse(
            &manifest("hello"),
            Path::new("hello/sluice.toml"),
        )
        .unwrap();
        assert_eq!(m.handlers[0].name, "hello");
        assert_eq!(m.handlers[0].module, Path::new("hello/hello.wasm"));
    }
}
