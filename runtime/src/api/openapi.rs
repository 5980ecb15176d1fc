//! The OpenAPI 3.1 document of the API, generated from the code (utoipa):
//! each route's `#[utoipa::path]` next to its handler, the JSON types of
//! [`dto`](super::dto) and [`ErrorBody`], and the conventions every route
//! shares (`414`/`431`, bearer auth, `401`, `403 read_only`, `5xx`) added here once.
//!
//! Routes are registered through `utoipa_axum`'s [`OpenApiRouter`], so a
//! route cannot be served without being documented. The document is served
//! at `GET /v1/openapi.json`, printed by `sluice openapi`, and committed as
//! `docs/openapi.json`, which a test compares with [`document`].
//!
//! [`OpenApiRouter`]: utoipa_axum::router::OpenApiRouter

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    HttpMethod, OpenApi as Document, RefOr, Response, ResponseBuilder, header::HeaderBuilder,
};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::error::{ErrorBody, RETRY_AFTER_SECS};

/// The document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "A serverless job runner for WebAssembly: a durable queue leases each \
            event to a fresh sandboxed wasmtime instance. Every error is a JSON `ErrorBody` \
            whose `code` is stable; the table of codes is in docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "messages", description = "Enqueue, and follow a message through its deliveries and attempts"),
        (name = "handlers", description = "Register, inspect, pause and remove handlers"),
        (name = "dlq", description = "Inspect, replay and purge the dead-letter queue"),
        (name = "schedules", description = "Durable cron entries whose firings are idempotent enqueues"),
        (name = "observability", description = "Stats, metrics, health and this document"),
    ),
    components(schemas(ErrorBody)),
)]
pub(super) struct ApiDoc;

/// The scheme's name in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// Adds what every route shares: `414` and `431` (the request head's limits),
/// bearer auth and its `401`, `403 read_only` on every method but `GET`, and
/// the store's `503` (with `Retry-After`) and `500`. An operation that
/// declares `security(())` (only `/healthz`) is left open.
fn finish(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "Required when the server has a token (`--token`); the read-only \
                     token (`--read-token`) is accepted on GET only.",
                ))
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
    for item in doc.paths.paths.values_mut() {
        for (method, op) in operations(item) {
            // Answered at the connection, before routing and auth
            // (`api::server`): any route, open or not.
            add(
                op,
                "414",
                error("`uri_too_long`: the request target is past its bound (docs/api.md)"),
            );
            add(
                op,
                "431",
                error(
                    "`headers_too_large`: too many header fields, or too many bytes of headers (docs/api.md)",
                ),
            );
            let open = op
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
            if open {
                continue;
            }
            add(op, "401", unauthorized());
            if method != HttpMethod::Get {
                add(
                    op,
                    "403",
                    error("`read_only`: the read-only token cannot change anything"),
                );
            }
            add(
                op,
                "500",
                error(
                    "`store_error`, `sandbox_error`, `internal`: corruption, a host failure, a bug",
                ),
            );
            add(
                op,
                "503",
                retry_after(error(
                    "`disk_full`, `store_unavailable`: the store cannot write; nothing was acknowledged. `compiler_busy` (registration): 4 compiles already run or wait",
                )),
            );
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

fn add(op: &mut Operation, status: &str, response: Response) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert(RefOr::T(response));
}

/// A JSON error response.
fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                ))))
                .build(),
        )
        .build()
}

fn unauthorized() -> Response {
    let mut r = error("`unauthorized`: missing or wrong bearer token");
    r.headers.insert(
        "WWW-Authenticate".into(),
        HeaderBuilder::new()
            .schema(String::schema())
            .description(Some("`Bearer`"))
            .build(),
    );
    r
}

/// `r` with the `Retry-After` header every 429 and 503 carries.
pub(super) fn retry_after(mut r: Response) -> Response {
    r.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(u64::schema())
            .description(Some(format!("Seconds to wait ({RETRY_AFTER_SECS})")))
            .build(),
    );
    r
}

/// The whole document: the routes' paths with the shared conventions.
pub fn document() -> Document {
    let (_, mut doc) = super::routes(super::BodyLimits::default()).split_for_parts();
    finish(&mut doc);
    doc
}

/// [`document`] as pretty JSON with a final newline, as `docs/openapi.json`
/// holds it, with the constraints utoipa cannot state (`refine`).
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = serde_json::to_value(document()).expect("the document serializes");
        refine(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc).expect("the document serializes");
        text.push('\n');
        text
    })
}

/// What the annotations cannot say, written into the JSON: the
/// `Sluice-Policy` header is a JSON `HandlerPolicy` (`content`, not a
/// string), the delivery search's parameters may be empty, and the names of message headers and of guest environment
/// variables follow the rules `names::validate_header` and the sandbox check.
fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1handlers~1{name}/put/parameters")
        .and_then(|p| p.as_array_mut())
    {
        for p in params
            .iter_mut()
            .filter(|p| p["name"] == super::POLICY_HEADER_NAME)
        {
            let object = p.as_object_mut().expect("a parameter is an object");
            object.remove("schema");
            object.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/HandlerPolicy"}}}),
            );
        }
    }
    // The delivery search takes an empty value as absent (an HTML form sends
    // every field): a formatted parameter may also be empty.
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1deliveries/get/parameters")
        .and_then(|p| p.as_array_mut())
    {
        for p in params.iter_mut() {
            if let Some(format) = p["schema"].get("format").cloned() {
                p["schema"] =
                    json!({"type": "string", "anyOf": [{"format": format}, {"maxLength": 0}]});
            }
        }
    }
    if let Some(headers) = doc.pointer_mut("/components/schemas/BatchItem/properties/headers") {
        headers["propertyNames"] = json!({"pattern": r"^[a-z0-9!#$%&'*+.^_`|~-]{1,128}$"});
        headers["additionalProperties"] =
            json!({"type": "string", "maxLength": 4096, "pattern": r"^[\t -~]*$"});
    }
    if let Some(env) = doc.pointer_mut("/components/schemas/HandlerPolicy/properties/env") {
        env["propertyNames"] = json!({"pattern": r"^(?!SLUICE_)[^=\u0000]+$"});
        env["additionalProperties"] = json!({"type": "string", "pattern": r"^[^\u0000]*$"});
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "observability",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
pub(super) async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], json())
}
