//! Registration-time checks of a module against the guest ABI
//! (docs/guest-abi.md §1), without compiling it. Components are told apart by
//! their header and checked by [`component::validate`](super::component::validate).
//!
//! The checks run before wasmtime sees the module, so each refusal can name the
//! exact problem in the ABI's terms (the offending import, the missing `_start`,
//! the memory minimum against the limit) rather than in the engine's.

use thiserror::Error;
use wasmparser::{
    CompositeInnerType, Encoding, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType,
    Validator,
};

use super::abi;
use super::config::fmt_bytes;

/// Linear memories a module may define (the pooling allocator's per-module slots).
pub const MAX_MEMORIES: u32 = 1;
/// Tables a module may define.
pub const MAX_TABLES: u32 = 1;
/// Largest table, in elements (the pool reserves this much per instance).
pub const MAX_TABLE_ELEMENTS: u64 = 100_000;

/// Most functions a module may define (imports not counted). What a compile
/// costs grows with them: 400,000 trivial functions took 42.6 s and 2.4 GB to
/// compile; 50,000 take about a tenth of that, more than any handler we know
/// of needs (a Rust handler with serde and an HTTP client defines ~5,000).
pub const MAX_FUNCTIONS: u32 = 50_000;
/// Largest code section, in bytes: 16 MiB. With [`MAX_FUNCTIONS`] it bounds
/// the time and memory of one compile.
pub const MAX_CODE_BYTES: u64 = 16 << 20;

/// Why a module is refused; the `Display` form is the message users see
/// (HTTP 400, CLI).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Not a valid WebAssembly module; wasmparser's message with its offset.
    #[error("invalid wasm: {message}")]
    InvalidWasm {
        /// wasmparser's message, e.g. `magic header not detected: ... (at offset 0x0)`.
        message: String,
    },
    /// A component that exports both the sluice world and `wasi:cli/run`.
    #[error("the component exports both sluice:handler/handler@1.0.0 and wasi:cli/run; export one")]
    AmbiguousComponent,
    /// A component that exports neither world sluice runs.
    #[error(
        "the component exports neither sluice:handler/handler@1.0.0 (guest-sdk/wit) nor wasi:cli/run@0.2 (a WASI command)"
    )]
    NoComponentWorld,
    /// A component import sluice does not provide.
    #[error("component import {name} is not allowed: {reason}")]
    ComponentImport {
        /// The import's name, e.g. `wasi:http/types@0.2.10`.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No `_start` export.
    #[error("module does not export _start (not a WASI command)")]
    MissingStart,
    /// `_start` exists but is not a `() -> ()` function.
    #[error("export _start must be a function of type () -> (), found {found}")]
    BadStart {
        /// What was found instead.
        found: String,
    },
    /// An import outside WASI preview 1 and `sluice`, or of a kind other than
    /// function.
    #[error("import {module}::{name} is not allowed: {reason}")]
    ForbiddenImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `sluice` import whose type differs from the ABI's.
    #[error("import sluice::{name} has type {found}, the ABI's is {expected}")]
    ImportType {
        /// The function's name.
        name: String,
        /// The type found in the module.
        found: String,
        /// The ABI's type.
        expected: String,
    },
    /// More memories or tables than an instance slot has.
    #[error("module defines {count} {what}; at most {max} supported")]
    TooMany {
        /// `memories` or `tables`.
        what: &'static str,
        /// How many the module defines.
        count: u32,
        /// The maximum.
        max: u32,
    },
    /// A code section larger than [`MAX_CODE_BYTES`].
    #[error("module has {} of code; at most {} supported (compiling costs grow with it)", fmt_bytes(*bytes), fmt_bytes(*max))]
    CodeTooLarge {
        /// Size of the code section.
        bytes: u64,
        /// The maximum.
        max: u64,
    },
    /// A shared memory (threads), which sluice does not run.
    #[error("module defines a shared memory; wasm threads are not supported")]
    SharedMemory,
    /// The memory's declared minimum exceeds the handler's memory limit.
    #[error("memory minimum {} > limit {}", fmt_bytes(*minimum_bytes), fmt_bytes(*limit_bytes))]
    MemoryTooLarge {
        /// Declared minimum, in bytes.
        minimum_bytes: u64,
        /// The handler's limit, in bytes.
        limit_bytes: u64,
    },
    /// A table's declared minimum exceeds [`MAX_TABLE_ELEMENTS`].
    #[error("table minimum {minimum} elements > limit {limit}")]
    TableTooLarge {
        /// Declared minimum, in elements.
        minimum: u64,
        /// The limit.
        limit: u64,
    },
}

/// Which of the three kinds of guest a module is (docs/guest-abi.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GuestKind {
    /// An ABI 1 core module (`wasm32-wasip1` command).
    #[default]
    Abi1,
    /// A component of the sluice world (`sluice:handler/handler@1.0.0`).
    Handler,
    /// A `wasi:cli` command component: ABI 1's stdin/env contract, outcome ok
    /// or exit 1.
    Command,
}

impl GuestKind {
    /// `abi1`, `handler-component` or `command-component`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Abi1 => "abi1",
            GuestKind::Handler => "handler-component",
            GuestKind::Command => "command-component",
        }
    }

    /// Whether it is a component (compiled and instantiated as one).
    pub fn is_component(self) -> bool {
        self != GuestKind::Abi1
    }
}

/// Whether `wasm` starts with a component header (it may still be invalid).
pub fn is_component(wasm: &[u8]) -> bool {
    matches!(
        Parser::new(0).parse_all(wasm).next(),
        Some(Ok(Payload::Version {
            encoding: Encoding::Component,
            ..
        }))
    )
}

/// What validation learnt about a module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// Which kind of guest it is.
    pub kind: GuestKind,
    /// Declared minimum of its memory, in bytes (0 without a memory).
    pub min_memory_bytes: u64,
    /// Its imports, as `module::name` (components: the interface names), in
    /// declaration order.
    pub imports: Vec<String>,
}

/// Refuses a module whose compile would cost more than the bounds allow
/// ([`MAX_FUNCTIONS`], [`MAX_CODE_BYTES`]), reading only section headers, before
/// anything else looks at it. Malformed bytes are left to the validator.
fn check_cost(wasm: &[u8]) -> Result<(), ValidationError> {
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::FunctionSection(reader)) if reader.count() > MAX_FUNCTIONS => {
                return Err(ValidationError::TooMany {
                    what: "functions",
                    count: reader.count(),
                    max: MAX_FUNCTIONS,
                });
            }
            Ok(Payload::CodeSectionStart { size, .. }) => {
                if u64::from(size) > MAX_CODE_BYTES {
                    return Err(ValidationError::CodeTooLarge {
                        bytes: u64::from(size),
                        max: MAX_CODE_BYTES,
                    });
                }
                // Nothing after the code section changes the cost.
                return Ok(());
            }
            Err(_) => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// wasmparser's refusal as a [`ValidationError`] (by value: it is the
/// `map_err` of every reader call).
#[allow(clippy::needless_pass_by_value, reason = "used as map_err(invalid)")]
pub(crate) fn invalid(e: wasmparser::BinaryReaderError) -> ValidationError {
    ValidationError::InvalidWasm {
        message: e.to_string(),
    }
}

/// A memory's declared minimum in bytes, refused if shared or above the limit.
pub(crate) fn memory_minimum(
    memory: &wasmparser::MemoryType,
    memory_limit_bytes: u64,
) -> Result<u64, ValidationError> {
    if memory.shared {
        return Err(ValidationError::SharedMemory);
    }
    let page = 1u64 << memory.page_size_log2();
    let minimum = memory.initial.saturating_mul(page);
    if minimum > memory_limit_bytes {
        return Err(ValidationError::MemoryTooLarge {
            minimum_bytes: minimum,
            limit_bytes: memory_limit_bytes,
        });
    }
    Ok(minimum)
}

/// Checks `wasm` against the guest ABI with a memory limit of
/// `memory_limit_bytes`; usable at registration without a [`Sandbox`](super::Sandbox).
///
/// A component is checked by
/// [`validate_component`](super::component::validate::validate_component).
/// A core module is refused, naming the problem, for: invalid bytes
/// (wasmparser's message), a missing or mistyped `_start`, any import that is
/// not a WASI preview 1 function or a `sluice` function of the ABI's type, more
/// than one memory or table, a shared memory, a memory minimum above the limit.
pub fn validate(wasm: &[u8], memory_limit_bytes: u64) -> Result<ModuleInfo, ValidationError> {
    // A component validates too, so look at the header first.
    if is_component(wasm) {
        return super::component::validate::validate_component(wasm, memory_limit_bytes);
    }
    check_cost(wasm)?;
    Validator::new().validate_all(wasm).map_err(invalid)?;

    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new(); // type index of each function, imports first
    let mut info = ModuleInfo::default();
    let mut memories = 0u32;
    let mut tables = 0u32;
    let mut start: Option<(ExternalKind, u32)> = None;

    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(invalid)?.into_types() {
                        types.push(match sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    info.imports
                        .push(format!("{}::{}", import.module, import.name));
                    let type_index = match import.ty {
                        TypeRef::Func(i) | TypeRef::FuncExact(i) => i,
                        _ => {
                            return Err(forbidden(
                                import.module,
                                import.name,
                                "only functions may be imported",
                            ));
                        }
                    };
                    check_import(import.module, import.name, types.get(type_index as usize))?;
                    func_types.push(type_index);
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty.map_err(invalid)?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    tables += 1;
                    if table.ty.initial > MAX_TABLE_ELEMENTS {
                        return Err(ValidationError::TableTooLarge {
                            minimum: table.ty.initial,
                            limit: MAX_TABLE_ELEMENTS,
                        });
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    memories += 1;
                    let minimum = memory_minimum(&memory.map_err(invalid)?, memory_limit_bytes)?;
                    info.min_memory_bytes = info.min_memory_bytes.max(minimum);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.name == "_start" {
                        start = Some((export.kind, export.index));
                    }
                }
            }
            _ => {}
        }
    }

    for (what, count, max) in [
        ("memories", memories, MAX_MEMORIES),
        ("tables", tables, MAX_TABLES),
    ] {
        if count > max {
            return Err(ValidationError::TooMany { what, count, max });
        }
    }
    match start {
        None => return Err(ValidationError::MissingStart),
        Some((ExternalKind::Func | ExternalKind::FuncExact, index)) => {
            let ty = func_types
                .get(index as usize)
                .and_then(|t| types.get(*t as usize))
                .and_then(Option::as_ref);
            match ty {
                Some(f) if f.params().is_empty() && f.results().is_empty() => {}
                Some(f) => {
                    return Err(ValidationError::BadStart {
                        found: fmt_func(f.params(), f.results()),
                    });
                }
                None => {
                    return Err(ValidationError::BadStart {
                        found: "a non-function type".into(),
                    });
                }
            }
        }
        Some((kind, _)) => {
            return Err(ValidationError::BadStart {
                found: format!("a {kind:?} export").to_lowercase(),
            });
        }
    }
    Ok(info)
}

fn forbidden(module: &str, name: &str, reason: &'static str) -> ValidationError {
    ValidationError::ForbiddenImport {
        module: module.into(),
        name: name.into(),
        reason,
    }
}

fn check_import(
    module: &str,
    name: &str,
    ty: Option<&Option<FuncType>>,
) -> Result<(), ValidationError> {
    match module {
        abi::WASI_MODULE => {
            if abi::WASI_P1_FUNCTIONS.contains(&name) {
                // wasmtime's linker checks the types of WASI functions.
                Ok(())
            } else {
                Err(forbidden(
                    module,
                    name,
                    "wasi_snapshot_preview1 has no such function",
                ))
            }
        }
        abi::SLUICE_MODULE => {
            let Some((params, results)) = abi::sluice_import_type(name) else {
                return Err(forbidden(
                    module,
                    name,
                    "sluice exports only publish, log and http_request",
                ));
            };
            let found = ty.and_then(Option::as_ref);
            match found {
                Some(f) if f.params() == params && f.results() == results => Ok(()),
                _ => Err(ValidationError::ImportType {
                    name: name.into(),
                    found: found
                        .map(|f| fmt_func(f.params(), f.results()))
                        .unwrap_or_else(|| "a non-function type".into()),
                    expected: fmt_func(params, results),
                }),
            }
        }
        _ => Err(forbidden(
            module,
            name,
            "imports must come from wasi_snapshot_preview1 or sluice",
        )),
    }
}

fn fmt_func(params: &[ValType], results: &[ValType]) -> String {
    let list = |v: &[ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}
