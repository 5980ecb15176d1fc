//! Registration-time checks of a component (docs/guest-abi.md, "Components"),
//! without compiling it: which world it is, that every import is one sluice
//! provides, and that its core modules fit an instance slot.

use wasmparser::{ComponentExternalKind, Parser, Payload, Validator};

use super::super::validate::{
    MAX_CODE_BYTES, MAX_FUNCTIONS, MAX_TABLE_ELEMENTS, MAX_TABLES, ValidationError, invalid,
    memory_minimum,
};
use super::super::{GuestKind, ModuleInfo};

/// Export of a component of the sluice world (guest-sdk/wit/handler.wit).
pub const HANDLER_EXPORT: &str = "sluice:handler/handler@1.0.0";
/// Import of the sluice world's host functions.
pub const HOST_IMPORT: &str = "sluice:handler/host@1.0.0";
/// The sluice world's type definitions, imported alongside [`HOST_IMPORT`].
pub const TYPES_IMPORT: &str = "sluice:handler/types@1.0.0";
/// Export of a `wasi:cli` command component (any 0.2 version).
pub const RUN_EXPORT_PREFIX: &str = "wasi:cli/run@0.2.";

/// The WASI 0.2 packages a component may import (wasmtime-wasi's and
/// wasmtime-wasi-http's, any 0.2 version up to the one they implement;
/// filesystem and sockets are linked but have no directories and no
/// network, so every call is denied; `wasi:http` requests go out only under
/// the handler's egress policy).
pub const WASI_PACKAGES: [&str; 7] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:http/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Most core instances one component may create: a componentize-py component
/// creates 14, a componentize-js one 4. The pool reserves this many per slot.
pub const MAX_CORE_INSTANCES: u32 = 32;
/// Linear memories one component may define (all its core modules together):
/// one, like a core module, so the memory limit means the same for both.
pub const MAX_COMPONENT_MEMORIES: u32 = 1;
/// Tables one component may define (all its core modules together); the
/// toolchains above define 2.
pub const MAX_COMPONENT_TABLES: u32 = 8;
/// Most code bytes of all a component's core modules together: 64 MiB (a
/// componentize-py component has about 12 MiB). With the per-module bounds it
/// bounds one compile (tens of seconds for an interpreter component).
pub const MAX_COMPONENT_CODE_BYTES: u64 = 64 << 20;

/// Checks a component: its world (it must export exactly one of
/// [`HANDLER_EXPORT`] or a `wasi:cli/run@0.2.*`), its imports (only
/// [`HOST_IMPORT`] and [`TYPES_IMPORT`], and only for the sluice world, and [`WASI_PACKAGES`]), and
/// its core modules (at most [`MAX_COMPONENT_MEMORIES`] memories, none shared,
/// none with a minimum above `memory_limit_bytes`; at most
/// [`MAX_COMPONENT_TABLES`] tables, [`MAX_CORE_INSTANCES`] core instances and
/// the per-module compile bounds).
pub fn validate_component(
    wasm: &[u8],
    memory_limit_bytes: u64,
) -> Result<ModuleInfo, ValidationError> {
    Validator::new().validate_all(wasm).map_err(invalid)?;
    let mut info = ModuleInfo::default();
    let mut exports_handler = false;
    let mut exports_run = false;
    let (mut memories, mut tables, mut instances, mut code) = (0u32, 0u32, 0u32, 0u64);
    // Each `Version` payload opens a component or module, each `End` closes
    // one: the component's own imports and exports are those at depth 1.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let name = import.map_err(invalid)?.name.name.to_owned();
                    info.imports.push(name);
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.kind != ComponentExternalKind::Instance {
                        continue;
                    }
                    exports_handler |= export.name.name == HANDLER_EXPORT;
                    exports_run |= export.name.name.starts_with(RUN_EXPORT_PREFIX);
                }
            }
            Payload::InstanceSection(reader) => {
                // Only instantiations cost a slot; bundles of exports do not.
                for instance in reader {
                    if let wasmparser::Instance::Instantiate { .. } = instance.map_err(invalid)? {
                        instances += 1;
                    }
                }
            }
            Payload::FunctionSection(reader) if reader.count() > MAX_FUNCTIONS => {
                return Err(ValidationError::TooMany {
                    what: "functions in one core module",
                    count: reader.count(),
                    max: MAX_FUNCTIONS,
                });
            }
            Payload::CodeSectionStart { size, .. } => {
                let size = u64::from(size);
                code += size;
                if size > MAX_CODE_BYTES || code > MAX_COMPONENT_CODE_BYTES {
                    return Err(ValidationError::CodeTooLarge {
                        bytes: if size > MAX_CODE_BYTES { size } else { code },
                        max: if size > MAX_CODE_BYTES {
                            MAX_CODE_BYTES
                        } else {
                            MAX_COMPONENT_CODE_BYTES
                        },
                    });
                }
            }
            Payload::TableSection(reader) => {
                if reader.count() > MAX_TABLES {
                    return Err(ValidationError::TooMany {
                        what: "tables in one core module",
                        count: reader.count(),
                        max: MAX_TABLES,
                    });
                }
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
            _ => {}
        }
    }
    for (what, count, max) in [
        ("memories", memories, MAX_COMPONENT_MEMORIES),
        ("tables", tables, MAX_COMPONENT_TABLES),
        ("core instances", instances, MAX_CORE_INSTANCES),
    ] {
        if count > max {
            return Err(ValidationError::TooMany { what, count, max });
        }
    }
    info.kind = match (exports_handler, exports_run) {
        (true, false) => GuestKind::Handler,
        (false, true) => GuestKind::Command,
        (true, true) => return Err(ValidationError::AmbiguousComponent),
        (false, false) => return Err(ValidationError::NoComponentWorld),
    };
    for name in &info.imports {
        check_import(name, info.kind)?;
    }
    Ok(info)
}

fn check_import(name: &str, kind: GuestKind) -> Result<(), ValidationError> {
    let refuse = |reason: &'static str| {
        Err(ValidationError::ComponentImport {
            name: name.to_owned(),
            reason,
        })
    };
    if name == HOST_IMPORT || name == TYPES_IMPORT {
        return match kind {
            GuestKind::Handler => Ok(()),
            _ => refuse("only components exporting sluice:handler/handler may import it"),
        };
    }
    if name.starts_with("sluice:") {
        return refuse("the sluice world is sluice:handler/host@1.0.0 (guest-sdk/wit)");
    }
    let wasi_0_2 = WASI_PACKAGES
        .iter()
        .any(|p| name.starts_with(p) && name.contains("@0.2."));
    if wasi_0_2 {
        return Ok(());
    }
    refuse(
        "components may import only sluice:handler/host and wasi:{cli,clocks,filesystem,http,io,random,sockets}@0.2",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_outside_the_world_are_named() {
        for (name, ok) in [
            ("wasi:cli/environment@0.2.9", true),
            ("wasi:sockets/tcp@0.2.12", true),
            ("sluice:handler/host@1.0.0", true),
            ("sluice:handler/types@1.0.0", true),
            ("wasi:http/types@0.2.10", true),
            ("wasi:http/types@0.3.0", false),
            ("wasi:cli/environment@0.3.0", false),
            ("sluice:handler/host@2.0.0", false),
            ("acme:db/query", false),
        ] {
            let r = check_import(name, GuestKind::Handler);
            assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains(name), "{e}");
            }
        }
        assert!(check_import(HOST_IMPORT, GuestKind::Command).is_err());
    }

    fn component(body: &str) -> Vec<u8> {
        wat::parse_str(format!("(component {body})")).unwrap()
    }

    #[test]
    fn the_world_is_told_by_the_exports() {
        let handler =
            component(r#"(instance $i) (export "sluice:handler/handler@1.0.0" (instance $i))"#);
        let info = validate_component(&handler, 1 << 20).unwrap();
        assert_eq!(info.kind, GuestKind::Handler);
        let command = component(r#"(instance $i) (export "wasi:cli/run@0.2.3" (instance $i))"#);
        assert_eq!(
            validate_component(&command, 1 << 20).unwrap().kind,
            GuestKind::Command
        );
        assert_eq!(
            validate_component(&component(""), 1 << 20).unwrap_err(),
            ValidationError::NoComponentWorld
        );
        let both = component(
            r#"(instance $i) (export "wasi:cli/run@0.2.3" (instance $i))
               (export "sluice:handler/handler@1.0.0" (instance $i))"#,
        );
        assert_eq!(
            validate_component(&both, 1 << 20).unwrap_err(),
            ValidationError::AmbiguousComponent
        );
    }

    #[test]
    fn registration_names_a_refused_import_and_a_memory_too_large() {
        let unknown = component(
            r#"(import "acme:db/query@1.0.0" (instance))
               (instance $i) (export "sluice:handler/handler@1.0.0" (instance $i))"#,
        );
        let e = validate_component(&unknown, 1 << 20).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("component import acme:db/query@1.0.0 is not allowed"),
            "{e}"
        );
        let big = component(
            r#"(core module $m (memory 200)) (core instance (instantiate $m))
               (instance $i) (export "sluice:handler/handler@1.0.0" (instance $i))"#,
        );
        assert!(matches!(
            validate_component(&big, 8 << 20).unwrap_err(),
            ValidationError::MemoryTooLarge { .. }
        ));
        assert!(validate_component(&big, 16 << 20).is_ok());
    }
}
