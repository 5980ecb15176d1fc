//! On-disk cache of compiled modules and components, keyed by the bytes'
//! sha256 and the engine's compatibility hash. For an interpreter component
//! (tens of seconds to compile) it is what makes a restart start at once.
//!
//! An entry is `<dir>/<module sha256>-<compat prefix>.cwasm`: a header (magic,
//! the engine's full compatibility hash, the sha256 of the artifact) followed by
//! the artifact `Module::serialize` (or `Component::serialize`) produced. An entry is deserialized only if
//! its header names this engine and its artifact hashes to the recorded digest;
//! anything else (another engine, a torn write, a flipped bit) is recompiled and
//! overwritten. Writes go to a temporary file renamed into place, so readers
//! never see a half-written entry under the final name.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

const MAGIC: &[u8; 16] = b"sluice-cwasm-v1\n";
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// How [`super::LoadedModule`] got its compiled code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleOrigin {
    /// Compiled now; no cache is configured or it had no entry.
    Compiled,
    /// Deserialized from a valid cache entry.
    Cached,
    /// The cache entry was unusable and the module was compiled again.
    Recompiled {
        /// Why the entry was refused, e.g. `engine compatibility hash differs`.
        reason: String,
    },
}

pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    Stale(String),
}

/// The cache directory plus this engine's compatibility hash.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    compat: [u8; 32],
}

/// Feeds a `Hash` value into sha256, giving a digest that is stable across
/// processes (unlike `DefaultHasher`'s random keys in `HashMap`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
}

/// sha256 of `engine.precompile_compatibility_hash()`: equal exactly when an
/// artifact from one engine may be loaded by the other.
pub(crate) fn compatibility_hash(engine: &Engine) -> [u8; 32] {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}

impl DiskCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<DiskCache, super::SandboxError> {
        fs::create_dir_all(dir).map_err(|source| super::SandboxError::Cache {
            path: dir.to_owned(),
            source,
        })?;
        Ok(DiskCache {
            dir: dir.to_owned(),
            compat: compatibility_hash(engine),
        })
    }

    /// The entry's path for a module.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", hex::encode(&self.compat[..8])))
    }

    pub(crate) fn get<T: Compiled>(&self, engine: &Engine, sha256: &str) -> Lookup<T> {
        let path = self.path(sha256);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Stale(format!("cannot read {}: {e}", path.display())),
        };
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Lookup::Stale("not a sluice cache entry (bad header)".into());
        }
        let (compat, rest) = bytes[MAGIC.len()..].split_at(32);
        let (digest, artifact) = rest.split_at(32);
        if compat != self.compat {
            return Lookup::Stale("engine compatibility hash differs".into());
        }
        if digest != Sha256::digest(artifact).as_slice() {
            return Lookup::Stale("artifact checksum mismatch (corrupted entry)".into());
        }
        match T::deserialize(engine, artifact) {
            Ok(m) => Lookup::Hit(m),
            Err(e) => Lookup::Stale(format!("wasmtime refused the artifact: {e}")),
        }
    }

    /// Stores compiled code; failures are reported, and the caller carries
    /// on without the cache.
    pub(crate) fn put<T: Compiled>(&self, sha256: &str, code: &T) -> io::Result<()> {
        let artifact = code.serialize().map_err(io::Error::other)?;
        let path = self.path(sha256);
        let tmp = path.with_extension(format!(
            "tmp-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&self.compat)?;
            f.write_all(&Sha256::digest(&artifact))?;
            f.write_all(&artifact)?;
            drop(f);
            fs::rename(&tmp, &path)
        };
        let result = write();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// Compiled code the cache can hold: a core module or a component.
pub(crate) trait Compiled: Sized {
    /// The artifact bytes.
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
    /// Turns verified artifact bytes of this engine back into code.
    fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Self>;
}

// SAFETY (both `deserialize`s): wasmtime's `deserialize` trusts its input to
// be an artifact produced by `serialize` of a compatible engine; arbitrary
// bytes could make it run arbitrary native code. These bytes come from our own
// cache directory (written only by `DiskCache::put`, from code this process
// compiled), behind a header naming this engine's compatibility hash, and they
// hash to the sha256 recorded when they were written, so they are exactly what
// a compatible engine serialized. wasmtime additionally checks its own version
// and configuration in the artifact. The checksum guards against corruption,
// not against an attacker: the cache directory must be writable by the runner
// alone, like its binary (docs/sandbox.md).
impl Compiled for Module {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }

    #[allow(unsafe_code)]
    fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Module> {
        // SAFETY: see above.
        unsafe { Module::deserialize(engine, artifact) }
    }
}

impl Compiled for Component {
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }

    #[allow(unsafe_code)]
    fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: see above.
        unsafe { Component::deserialize(engine, artifact) }
    }
}
