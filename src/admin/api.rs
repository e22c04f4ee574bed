//! The operators' API on the admin listener (`/v1/...`): numbers and their
//! registered addresses, tenant locations, security desk webhooks, call
//! record exports and the audit log. `docs/api.md` walks through it and
//! `docs/openapi.yaml` describes every endpoint.
//!
//! Every request needs a bearer token (401 without one). Operators reach
//! every tenant; a tenant admin only its own (403 for another tenant's
//! paths), and a number of another tenant is "not found" exactly as a
//! number that does not exist. Errors are JSON: `{"error": "..."}` plus
//! details (`rows`, `capability`, `missing`).
//!
//! Besides the inventory changes, the audit log gets every reload, every
//! export of call records (who, which filter, how many records) and the
//! refused requests (401, 403), the latter within limits ([`refusals`]).

mod refusals;
mod uploads;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::auth::{self, Principal, Token};
use crate::cdr::{parse_rfc3339, rfc3339, CallRecord};
use crate::config::AdminConfig;
use crate::inventory::normalize_e164;
use crate::store::address::{self, AddressRefused, AddressRules};
use crate::store::audit::Note;
use crate::store::numbers::{not_found, AuditFilter};
use crate::store::records::RecordFilter;
use crate::store::upload::{self, UploadError};
use crate::store::{Actor, Store, StoreError};

/// Rows or records per database round trip in exports and listings.
const PAGE: i64 = 500;

/// The API's state.
pub struct Api {
    /// Asks the router to reload its configuration; the answer says
    /// whether the new one was applied.
    reload: std::sync::OnceLock<
        tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
    >,
    store: Arc<Store>,
    tokens: ArcSwap<Vec<Token>>,
    rules: ArcSwap<AddressRules>,
    max_body: usize,
    refusals: Mutex<refusals::Limiter>,
    /// The security desk configuration, for where webhooks may go.
    desks: std::sync::OnceLock<crate::notify::Webhooks>,
    uploads: uploads::Uploads,
    /// The ECRFs registered addresses are checked by, when
    /// `[emergency.lost]` names any; replaced on reload.
    ecrf: arc_swap::ArcSwapOption<super::ecrf_check::EcrfAddresses>,
}

impl Api {
    pub fn new(store: Arc<Store>, admin: &AdminConfig) -> Arc<Api> {
        Arc::new(Api {
            reload: std::sync::OnceLock::new(),
            store,
            tokens: ArcSwap::from_pointee(auth::tokens(&admin.tokens)),
            rules: ArcSwap::from_pointee(AddressRules::of_admin(Some(admin))),
            max_body: admin.max_body_bytes,
            refusals: Mutex::new(refusals::Limiter::default()),
            desks: std::sync::OnceLock::new(),
            uploads: Default::default(),
            ecrf: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// Connects the ECRFs of `[emergency.lost]` (at start and on each
    /// reload): from then on, addresses that come in are asked about there
    /// first; with `None`, the gazetteer checks them. A check under way
    /// keeps the ECRFs it started with.
    pub fn set_ecrf(&self, ecrf: Option<Arc<super::ecrf_check::EcrfAddresses>>) {
        self.ecrf.store(ecrf);
    }

    /// The ECRFs addresses are checked by now.
    fn ecrf(&self) -> Option<Arc<super::ecrf_check::EcrfAddresses>> {
        self.ecrf.load_full()
    }

    /// The address rules, with the ECRF's answers for `addresses` where
    /// an ECRF is configured.
    fn rules_for<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a crate::inventory::Address>,
    ) -> impl std::future::Future<Output = Arc<AddressRules>> + Send + 'static {
        let rules = self.rules.load_full();
        let ecrf = self.ecrf();
        let plan = ecrf.as_ref().map(|e| e.plan(&rules, addresses));
        async move {
            match (ecrf, plan) {
                (Some(e), Some(plan)) if !plan.distinct.is_empty() || plan.not_asked > 0 => {
                    Arc::new(rules.with_answers(e.ask_all(plan).await.answers))
                }
                _ => rules,
            }
        }
    }

    /// Connects the security desk configuration (reloads included): a
    /// webhook is accepted only where `emergency.webhook_destinations` and
    /// the outbound policy allow. Until then, outside addresses only.
    pub fn set_webhooks(&self, desks: crate::notify::Webhooks) {
        let _ = self.desks.set(desks);
    }

    /// Connects `POST /v1/reload` to the router's reload.
    pub fn set_reload(
        &self,
        tx: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ) {
        let _ = self.reload.set(tx);
    }

    /// Takes the tokens, address rules and ECRFs of a reloaded
    /// configuration (the body limit and listener stay until a restart).
    pub fn reconfigure(&self, config: &crate::config::Config) {
        let admin = config.admin.as_ref();
        self.set_ecrf(super::ecrf_check::EcrfAddresses::from_config(config));
        let tokens = admin.map(|a| auth::tokens(&a.tokens)).unwrap_or_default();
        self.tokens.store(Arc::new(tokens));
        if let Some(a) = admin {
            self.rules.store(Arc::new(AddressRules::of_admin(Some(a))));
        }
    }
}

/// The API routes, to merge with the health routes.
pub fn routes(api: Arc<Api>) -> axum::Router {
    let max = api.max_body;
    axum::Router::new()
        .route(
            "/v1/tenants/{tenant}/numbers",
            get(list_numbers).post(upload_numbers),
        )
        .route(
            "/v1/tenants/{tenant}/numbers/{number}",
            get(get_number).delete(delete_number),
        )
        .route(
            "/v1/tenants/{tenant}/numbers/{number}/address",
            axum::routing::put(put_address).delete(delete_address),
        )
        .route(
            "/v1/tenants/{tenant}/locations",
            get(list_locations).post(post_location),
        )
        .route(
            "/v1/tenants/{tenant}/locations/{id}",
            get(get_location).delete(delete_location),
        )
        .route(
            "/v1/tenants/{tenant}/security-desk",
            get(get_desk).put(put_desk).delete(delete_desk),
        )
        .route("/v1/records", get(export_records))
        .route("/v1/audit", get(audit_log))
        .route("/v1/inventory", get(inventory_status))
        .route("/v1/reload", axum::routing::post(reload))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::from_fn_with_state(max, declared_length))
        // Bulk uploads take bodies of any size, as a stream.
        .merge(
            axum::Router::new()
                .route("/v1/uploads", axum::routing::post(uploads::post_upload))
                .route("/v1/uploads/{id}", get(uploads::get_upload))
                .layer(DefaultBodyLimit::disable()),
        )
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            audit_refusals,
        ))
        .with_state(api)
}

/// Why a request was refused (401, 403), for the audit log.
#[derive(Clone)]
struct RefusalReason(String);

/// Writes the requests answered 401 or 403 to the audit log, within the
/// limits of [`refusals`]: who (the token's name, or whether a token came
/// at all; never the token), from where, what, and why. Off the request:
/// the answer never waits on the database.
async fn audit_refusals(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let what = format!("{} {}", req.method(), req.uri().path());
    let tenant = refused_tenant(req.uri());
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(auth::bearer).map(str::to_string));
    let resp = next.run(req).await;
    let status = resp.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return resp;
    }
    let actor = match token {
        None => Actor {
            name: "(no token)".into(),
            role: "none",
        },
        Some(t) => match t.and_then(|t| auth::authenticate(&api.tokens.load(), &t)) {
            Some(p) => actor(&p),
            None => Actor {
                name: "(unknown token)".into(),
                role: "none",
            },
        },
    };
    let reason = resp
        .extensions()
        .get::<RefusalReason>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let source = source.unwrap_or_else(|| "unknown".into());
    let now = crate::store::now_ms();
    let verdict = api
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .refused(&source, now);
    match verdict {
        refusals::Verdict::Write => {
            let mut what = what;
            if what.len() > 200 {
                let mut end = 200;
                while !what.is_char_boundary(end) {
                    end -= 1;
                }
                what.truncate(end);
            }
            let note = Note {
                actor,
                tenant,
                subject: what,
                field: "request",
                action: "refused",
                new: json!({"status": status.as_u16(), "source": source, "error": reason}),
            };
            let store = api.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.audit_note(&note).await {
                    tracing::error!(error = %e, "a refused request could not be written to the audit log");
                }
            });
        }
        refusals::Verdict::Count {
            window,
            source,
            first: true,
        } => {
            tokio::spawn(keep_refusal_count(api.clone(), window, source));
        }
        refusals::Verdict::Count { .. } => {}
    }
    resp
}

/// The tenant a refused request aimed at (its path's, or its `tenant`
/// parameter's), or `*`.
fn refused_tenant(uri: &axum::http::Uri) -> String {
    let from_path = uri
        .path()
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next());
    let from_query = || {
        uri.query()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("tenant="))
    };
    from_path
        .or_else(from_query)
        .filter(|t| valid_tenant(t))
        .unwrap_or("*")
        .to_string()
}

/// Keeps the entry counting the refusals of `source` in the minute at
/// `window` up to date: written a few seconds after the first, rewritten
/// while more come, final once the minute is over.
async fn keep_refusal_count(api: Arc<Api>, window: i64, source: String) {
    let mut id: Option<String> = None;
    let mut written = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let (count, over) = api
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count(window, &source, crate::store::now_ms());
        if count != written {
            let new = json!({
                "source": source,
                "count": count,
                "from": rfc3339(window),
                "to": rfc3339(window + refusals::WINDOW_MS),
                "note": format!(
                    "refused requests past {} from one source, or {} from all, in a minute: counted here, not written one by one",
                    refusals::PER_SOURCE,
                    refusals::OVERALL
                ),
            });
            let done = match &id {
                None => api
                    .store
                    .audit_note(&Note {
                        actor: Actor {
                            name: "(counted)".into(),
                            role: "none",
                        },
                        tenant: "*".into(),
                        subject: "refused requests".into(),
                        field: "request",
                        action: "refused",
                        new,
                    })
                    .await
                    .map(|n| id = Some(n)),
                Some(id) => api.store.audit_complete(id, &new).await,
            };
            match done {
                Ok(()) => written = count,
                Err(e) => {
                    tracing::error!(error = %e, "refused requests could not be counted in the audit log")
                }
            }
        }
        if over {
            return;
        }
    }
}

/// Refuses a body whose declared length is over the limit before reading
/// any of it (a body without a length is cut at the limit when read).
async fn declared_length(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max).into_response();
    }
    next.run(req).await
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than the limit of {max} bytes"),
    )
}

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"error": message.into()}),
        }
    }

    fn with(mut self, key: &str, value: Value) -> ApiError {
        self.body[key] = value;
        self
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
        .then(|| self.body["error"].as_str().unwrap_or_default().to_string());
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(reason) = reason {
            r.extensions_mut().insert(RefusalReason(reason));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sosrouter\""),
            );
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            StoreError::Forbidden {
                message,
                capability,
            } => {
                ApiError::new(StatusCode::FORBIDDEN, message).with("capability", json!(capability))
            }
            StoreError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            StoreError::Rows(rows) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} row(s) cannot be applied; nothing was changed",
                    rows.len()
                ),
            )
            .with("rows", json!(rows)),
            e @ (StoreError::Db(_) | StoreError::Other(_)) => {
                tracing::error!(error = %e, "admin API: database failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the database failed; nothing was changed",
                )
            }
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        ApiError::new(r.status(), r.body_text())
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

impl FromRequestParts<Arc<Api>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        api: &Arc<Api>,
    ) -> Result<Principal, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is needed (Authorization: Bearer TOKEN)",
            )
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .ok_or_else(unauthorized)?;
        auth::authenticate(&api.tokens.load(), presented).ok_or_else(unauthorized)
    }
}

fn actor(p: &Principal) -> Actor {
    Actor {
        name: p.name.clone(),
        role: p.role.as_str(),
    }
}

/// A tenant name: 1 to 64 letters, digits, `.`, `_` or `-`.
fn valid_tenant(t: &str) -> bool {
    upload::valid_tenant(t)
}

/// The tenant is well formed and within the token's reach.
fn scope(p: &Principal, tenant: &str) -> ApiResult<()> {
    if !valid_tenant(tenant) {
        return Err(ApiError::bad(format!(
            "tenant {tenant:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        )));
    }
    if !p.may_access(tenant) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this token may only reach its own tenant",
        ));
    }
    Ok(())
}

fn operator_only(p: &Principal, what: &str) -> ApiResult<()> {
    if p.is_operator() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only operator tokens may {what}"),
        ))
    }
}

/// A number from the path: E.164 with its `+` (percent-encoded or not),
/// or the same digits without it.
fn path_number(raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    let with_plus = if raw.starts_with('+') {
        raw.to_string()
    } else {
        format!("+{raw}")
    };
    normalize_e164(&with_plus, None, None)
        .ok_or_else(|| ApiError::bad(format!("{raw:?} is not an E.164 number")))
}

fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

// ----- numbers -----

async fn list_numbers(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    scope(&p, &tenant)?;
    if let Some(k) = q.keys().find(|k| *k != "address") {
        return Err(ApiError::bad(format!("unknown parameter {k:?}")));
    }
    let state = match q.get("address").map(String::as_str) {
        None => None,
        Some(s @ ("valid" | "invalid" | "unchecked")) => Some(s.to_string()),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "address={other:?}: valid, invalid or unchecked"
            )))
        }
    };
    let store = api.store.clone();
    let body = stream_json_array(String::new(), move |after: String| {
        let (store, tenant, state) = (store.clone(), tenant.clone(), state.clone());
        async move {
            store
                .numbers_page(&tenant, &after, PAGE, state.as_deref())
                .await
        }
    });
    Ok(json_stream_response(body))
}

async fn upload_numbers(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    scope(&p, &tenant)?;
    operator_only(&p, "upload numbers")?;
    let format = upload_format(&headers)?;
    let body = body?;
    let t = tenant.clone();
    let parsed = tokio::task::spawn_blocking(move || upload::parse(&body, format, &t))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let up = match parsed {
        Ok(u) => u,
        Err(UploadError::Malformed(m)) => return Err(ApiError::bad(m)),
        Err(UploadError::Rows(rows)) => return Err(StoreError::Rows(rows).into()),
    };
    // The addresses the rows set, complete with the row's country (a row
    // without one takes its number's when applied: the gazetteer checks
    // those).
    let own: Vec<crate::inventory::Address> = up
        .numbers
        .iter()
        .filter_map(|n| match &n.address {
            upload::Change::Set(Some(a)) => {
                n.country.as_deref().and_then(|c| a.complete(Some(c)).ok())
            }
            _ => None,
        })
        .collect();
    let rules = api
        .rules_for(up.locations.iter().map(|l| &l.address).chain(&own))
        .await;
    let summary = api
        .store
        .apply_upload(&tenant, &up, &actor(&p), &rules)
        .await?;
    tracing::info!(
        tenant = %tenant,
        by = %p.name,
        created = summary.created,
        updated = summary.updated,
        "numbers uploaded"
    );
    Ok(ok_json(StatusCode::OK, json!(summary)))
}

/// An upload's format, from its Content-Type (JSON when it has none).
fn upload_format(headers: &HeaderMap) -> ApiResult<upload::Format> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = ctype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(upload::Format::Json),
        "text/csv" => Ok(upload::Format::Csv),
        "text/tab-separated-values" => Ok(upload::Format::Tsv),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {other:?}: send application/json, text/csv or text/tab-separated-values"
            ),
        )),
    }
}

/// A refused address as a 422: `missing` names the required elements it
/// lacks, `elements` those the address checker found at fault.
fn refused(e: AddressRefused) -> ApiError {
    let key = match &e {
        AddressRefused::Missing { .. } => "missing",
        AddressRefused::Invalid { .. } => "elements",
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.describe("")).with(key, json!(e.elements()))
}

async fn get_number(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, number)): Path<(String, String)>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let number = path_number(&number)?;
    match api.store.number(&tenant, &number).await? {
        Some((n, loc)) => Ok(ok_json(
            StatusCode::OK,
            n.to_json(loc.as_ref().map(|(a, c)| (a, c.as_ref()))),
        )),
        None => Err(not_found(&tenant, &number).into()),
    }
}

async fn delete_number(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, number)): Path<(String, String)>,
) -> ApiResult {
    scope(&p, &tenant)?;
    operator_only(&p, "delete numbers")?;
    let number = path_number(&number)?;
    api.store
        .delete_number(&tenant, &number, &actor(&p))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_address(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, number)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let number = path_number(&number)?;
    let Some((n, _)) = api.store.number(&tenant, &number).await? else {
        return Err(not_found(&tenant, &number).into());
    };
    let v = json_body(body)?;
    let a = address::from_json(&v, Some(&n.country)).map_err(|errors| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, errors.join("; "))
            .with("errors", json!(errors))
    })?;
    let check = api.rules_for([&a]).await.check(&a).map_err(refused)?;
    let out = api
        .store
        .set_address(
            &tenant,
            &number,
            Some((a, check)),
            &actor(&p),
            !p.is_operator(),
        )
        .await?;
    tracing::info!(tenant = %tenant, by = %p.name, "registered address set");
    Ok(ok_json(StatusCode::OK, out))
}

async fn delete_address(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, number)): Path<(String, String)>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let number = path_number(&number)?;
    let out = api
        .store
        .set_address(&tenant, &number, None, &actor(&p), !p.is_operator())
        .await?;
    tracing::info!(tenant = %tenant, by = %p.name, "registered address deleted");
    Ok(ok_json(StatusCode::OK, out))
}

// ----- locations -----

async fn list_locations(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let all = api.store.locations(&tenant).await?;
    let v: Vec<Value> = all.iter().map(|l| l.to_json(&tenant)).collect();
    Ok(ok_json(StatusCode::OK, Value::Array(v)))
}

async fn get_location(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    scope(&p, &tenant)?;
    match api.store.location(&tenant, &id).await? {
        Some(l) => Ok(ok_json(StatusCode::OK, l.to_json(&tenant))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no location {id:?} in tenant {tenant:?}"),
        )),
    }
}

async fn post_location(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let v = json_body(body)?;
    let Some(o) = v.as_object() else {
        return Err(ApiError::bad(
            "a location is {\"id\": ..., \"address\": {...}}",
        ));
    };
    if let Some(k) = o.keys().find(|k| *k != "id" && *k != "address") {
        return Err(ApiError::bad(format!("unknown field {k:?}")));
    }
    let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
    if !upload::valid_id(id) {
        return Err(ApiError::bad(
            "id: 1 to 64 letters, digits, '.', '_', '-' or ':'",
        ));
    }
    let a =
        address::from_json(o.get("address").unwrap_or(&Value::Null), None).map_err(|errors| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, errors.join("; "))
                .with("errors", json!(errors))
        })?;
    let check = api.rules_for([&a]).await.check(&a).map_err(refused)?;
    let created = api
        .store
        .put_location(&tenant, id, &a, &check, &actor(&p))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ok_json(
        status,
        json!({"tenant": tenant, "id": id, "address": address::to_json(&a),
               "address_check": check.to_json()}),
    ))
}

async fn delete_location(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    scope(&p, &tenant)?;
    api.store.delete_location(&tenant, &id, &actor(&p)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- security desk -----

/// How long setting a webhook may wait for its name to resolve.
const WEBHOOK_LOOKUP: std::time::Duration = std::time::Duration::from_secs(2);

fn valid_webhook(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    url.len() <= 2048
        && host.is_some_and(|h| !h.is_empty() && !h.starts_with(':'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

async fn get_desk(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
) -> ApiResult {
    scope(&p, &tenant)?;
    match api.store.security_desk(&tenant).await? {
        Some(url) => Ok(ok_json(
            StatusCode::OK,
            json!({"tenant": tenant, "url": url}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("tenant {tenant:?} has no security desk webhook"),
        )),
    }
}

async fn put_desk(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    scope(&p, &tenant)?;
    let v = json_body(body)?;
    let url = v
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim();
    let parsed = reqwest::Url::parse(url).ok();
    let Some(parsed) = parsed.filter(|_| valid_webhook(url)) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url: an http:// or https:// URL with a host",
        ));
    };
    // The router will POST the caller's location there: not to its own
    // host, link-local (metadata) or multicast addresses, in any spelling,
    // unless the operator allows it. Checked again on each send.
    let allowed = api
        .desks
        .get()
        .map(|d| d.load().allowed.clone())
        .unwrap_or_default();
    if let Err(why) = allowed.check_url_resolved(&parsed, WEBHOOK_LOOKUP).await {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("url: refused: {why}; the router does not send to its own host, link-local, multicast, broadcast or reserved addresses unless the operator allows the destination (emergency.webhook_destinations)"),
        ));
    }
    api.store
        .set_security_desk(&tenant, Some(url), &actor(&p))
        .await?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"tenant": tenant, "url": url}),
    ))
}

async fn delete_desk(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(tenant): Path<String>,
) -> ApiResult {
    scope(&p, &tenant)?;
    api.store
        .set_security_desk(&tenant, None, &actor(&p))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- records, audit, status -----

/// Reads `from`/`to` (RFC 3339) and refuses parameters not in `allowed`.
fn time_range(q: &HashMap<String, String>, allowed: &[&str]) -> ApiResult<(i64, i64)> {
    if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "unknown parameter {k:?} (known: {})",
            allowed.join(", ")
        )));
    }
    let time = |k: &str, default: i64| -> ApiResult<i64> {
        match q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => parse_rfc3339(s).ok_or_else(|| {
                ApiError::bad(format!(
                    "{k}: {s:?} is not an RFC 3339 time (2024-05-01T00:00:00Z)"
                ))
            }),
        }
    };
    let from = time("from", i64::MIN)?;
    let to = time("to", i64::MAX)?;
    if from > to {
        return Err(ApiError::bad("from is after to"));
    }
    Ok((from, to))
}

async fn export_records(
    State(api): State<Arc<Api>>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (from_ms, to_ms) = time_range(&q, &["tenant", "from", "to", "format"])?;
    let tenant = q.get("tenant").filter(|t| !t.is_empty()).cloned();
    let tenant = match (&p.tenant, tenant) {
        (_, Some(t)) => {
            scope(&p, &t)?;
            Some(t)
        }
        (Some(own), None) if !p.is_operator() => Some(own.clone()),
        (_, None) => None,
    };
    let csv = match q.get("format").map(String::as_str).unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => return Err(ApiError::bad(format!("format {other:?}: json or csv"))),
    };
    let filter = RecordFilter {
        tenant,
        from_ms,
        to_ms,
    };
    tracing::info!(by = %p.name, tenant = ?filter.tenant, csv, "call records exported");
    // In the audit log before the first record leaves; the number of
    // records sent is added when the export ends.
    let bound = |ms: i64| (ms != i64::MIN && ms != i64::MAX).then(|| rfc3339(ms));
    let mut what = json!({
        "format": if csv { "csv" } else { "json" },
        "tenant": filter.tenant,
        "from": bound(from_ms),
        "to": bound(to_ms),
        "rows": null,
    });
    let note = Note {
        actor: actor(&p),
        tenant: filter.tenant.clone().unwrap_or_else(|| "*".into()),
        subject: "call-records".into(),
        field: "records",
        action: "export",
        new: what.clone(),
    };
    let entry = api.store.audit_note(&note).await.map_err(|e| {
        tracing::error!(error = %e, "admin API: an export could not be written to the audit log");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the export could not be written to the audit log; nothing was exported",
        )
    })?;
    let audit_store = api.store.clone();
    let done = move |rows: u64, complete: bool| {
        what["rows"] = json!(rows);
        what["complete"] = json!(complete);
        tokio::spawn(async move {
            if let Err(e) = audit_store.audit_complete(&entry, &what).await {
                tracing::error!(error = %e, "the size of an export could not be written to the audit log");
            }
        });
    };
    let store = api.store.clone();
    let fetch = move |after: (i64, String)| {
        let (store, filter) = (store.clone(), filter.clone());
        async move { store.records_page(&filter, &after, PAGE).await }
    };
    let start = (i64::MIN, String::new());
    if csv {
        let body = stream_pages(
            start,
            fetch,
            csv_header(),
            String::new(),
            |out, r, _| csv_line(out, r),
            done,
        );
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"call-records.csv\"",
                ),
            ],
            body,
        )
            .into_response())
    } else {
        let body = stream_pages(
            start,
            fetch,
            "[".into(),
            "]\n".into(),
            |out, r, first| {
                if !first {
                    out.push(',');
                }
                out.push_str(&record_json(r).to_string());
            },
            done,
        );
        Ok(json_stream_response(body))
    }
}

async fn audit_log(
    State(api): State<Arc<Api>>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    operator_only(&p, "read the audit log")?;
    let (from_ms, to_ms) = time_range(&q, &["tenant", "from", "to"])?;
    let filter = AuditFilter {
        tenant: q.get("tenant").filter(|t| !t.is_empty()).cloned(),
        from_ms,
        to_ms,
    };
    let store = api.store.clone();
    let body = stream_json_array((i64::MIN, String::new()), move |after| {
        let (store, filter) = (store.clone(), filter.clone());
        async move { store.audit_page(&filter, after, PAGE).await }
    });
    Ok(json_stream_response(body))
}

/// Reloads the configuration, as SIGHUP does (operators).
async fn reload(State(api): State<Arc<Api>>, p: Principal) -> ApiResult {
    operator_only(&p, "reload the configuration")?;
    let Some(tx) = api.reload.get() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload is not available",
        ));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(reply).await.is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the router is stopping",
        ));
    }
    let Ok(result) = answer.await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the router is stopping",
        ));
    };
    api.store.audit_reload(actor(&p), "api", &result).await;
    match result {
        Ok(()) => Ok(ok_json(StatusCode::OK, json!({"reloaded": true}))),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("new configuration refused; the running one stays: {e}"),
        )),
    }
}

async fn inventory_status(State(api): State<Arc<Api>>, p: Principal) -> ApiResult {
    operator_only(&p, "read the inventory status")?;
    let hub = api.store.hub();
    let database = api.store.version().await.map_err(StoreError::from)?;
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "backend": api.store.backend().as_str(),
            "database_version": database,
            "snapshot_version": hub.version(),
            "numbers": hub.inventory().len(),
        }),
    ))
}

/// A record as exported in JSON: as stored, with RFC 3339 times beside the
/// millisecond ones.
fn record_json(r: &CallRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["invite_time"] = json!(rfc3339(r.invite_ms));
    v["answer_time"] = json!(r.answer_ms.map(rfc3339));
    v["end_time"] = json!(r.end_ms.map(rfc3339));
    v
}

const CSV_COLUMNS: &[&str] = &[
    "id",
    "tenant",
    "kind",
    "call_id",
    "caller_number",
    "caller_uri",
    "from",
    "pai",
    "dialed",
    "request_uri",
    "invite_time",
    "answer_time",
    "end_time",
    "duration_ms",
    "final_status",
    "outcome",
    "route",
    "reason",
    "trunk",
    "psap_id",
    "attempts",
    "country",
    "location_source",
    "location",
    "registered_address",
    "source_ip",
    "source_port",
    "transport",
    "user_agent",
    "warnings",
    // Added after the others, so that readers by position keep working.
    "service",
];

fn csv_row(fields: &[String]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let _ = w.write_record(fields);
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn csv_header() -> String {
    let cols: Vec<String> = CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
    csv_row(&cols)
}

/// A cell as exported: one that a spreadsheet would read as a formula
/// (first character `=`, `+`, `-`, `@`, tab or carriage return) gets a
/// leading `'`, so that it is shown as text and never evaluated. Every
/// column goes through here, whoever filled it: the caller chooses the
/// User-Agent, the From and more. E.164 numbers begin with `+` and are
/// quoted too (`'+12125550142`), which keeps them from being read as
/// numbers that lose their `+` and leading digits.
fn csv_cell(v: String) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v
    }
}

fn csv_line(out: &mut String, r: &CallRecord) {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let j =
        |v: &Option<crate::cdr::Json>| v.as_ref().map(|j| j.text().to_string()).unwrap_or_default();
    let fields = vec![
        r.id.clone(),
        o(&r.tenant),
        r.kind.clone(),
        r.call_id.clone(),
        o(&r.caller_number),
        r.caller_uri.clone(),
        r.from.clone(),
        o(&r.pai),
        r.dialed.clone(),
        r.request_uri.clone(),
        rfc3339(r.invite_ms),
        r.answer_ms.map(rfc3339).unwrap_or_default(),
        r.end_ms.map(rfc3339).unwrap_or_default(),
        n(r.duration_ms),
        r.final_status.map(|s| s.to_string()).unwrap_or_default(),
        r.outcome.clone(),
        r.route.clone(),
        r.reason.clone(),
        o(&r.trunk),
        o(&r.psap_id),
        serde_json::to_string(&r.attempts).unwrap_or_default(),
        o(&r.country),
        r.location_source.clone(),
        j(&r.location),
        j(&r.registered_address),
        r.source_ip.clone(),
        r.source_port.to_string(),
        r.transport.clone(),
        o(&r.user_agent),
        r.warnings.join("; "),
        o(&r.service),
    ];
    let fields: Vec<String> = fields.into_iter().map(csv_cell).collect();
    out.push_str(&csv_row(&fields));
}

fn json_stream_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON array streamed page by page.
fn stream_json_array<C, F, Fut>(start: C, fetch: F) -> Body
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<(C, Value)>, StoreError>> + Send,
{
    stream_pages(
        start,
        fetch,
        "[".into(),
        "]\n".into(),
        |out, v, first| {
            if !first {
                out.push(',');
            }
            out.push_str(&v.to_string());
        },
        |_, _| {},
    )
}

/// A body written by a task that pages through the database: `head`,
/// each item through `render` (told whether it is the first), `tail`;
/// then `done` learns how many items were sent and whether the body was
/// complete. At most a few pages wait in memory; a client that goes away
/// stops the task. A database failure midway cuts the body short (the
/// client sees an incomplete transfer, never a complete-looking one).
fn stream_pages<C, T, F, Fut, R, D>(
    start: C,
    fetch: F,
    head: String,
    tail: String,
    render: R,
    done: D,
) -> Body
where
    C: Send + 'static,
    T: Send + 'static,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<(C, T)>, StoreError>> + Send,
    R: Fn(&mut String, &T, bool) + Send + 'static,
    D: FnOnce(u64, bool) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let (sent, complete) = async move {
            let mut sent = 0u64;
            if tx.send(Ok(Bytes::from(head))).await.is_err() {
                return (sent, false);
            }
            let mut cursor = start;
            let mut first = true;
            loop {
                let page = match fetch(cursor).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "export stopped by a database failure");
                        let _ = tx
                            .send(Err(std::io::Error::other("database failure")))
                            .await;
                        return (sent, false);
                    }
                };
                let full = page.len() as i64 >= PAGE;
                let mut out = String::new();
                let mut last = None;
                let n = page.len() as u64;
                for (c, item) in page {
                    render(&mut out, &item, first);
                    first = false;
                    last = Some(c);
                }
                if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                    return (sent, false);
                }
                sent += n;
                match (full, last) {
                    (true, Some(c)) => cursor = c,
                    _ => break,
                }
            }
            (sent, tx.send(Ok(Bytes::from(tail))).await.is_ok())
        }
        .await;
        done(sent, complete);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_paths() {
        assert_eq!(path_number("+12125550142").unwrap(), "+12125550142");
        assert_eq!(path_number("12125550142").unwrap(), "+12125550142");
        assert!(path_number("+1212").is_err());
        assert!(path_number("abc").is_err());
    }

    #[test]
    fn webhooks_and_tenants() {
        assert!(valid_webhook("https://desk.example.com/hook?x=1"));
        assert!(valid_webhook("http://127.0.0.1:8081/"));
        assert!(!valid_webhook("ftp://desk.example.com/"));
        assert!(!valid_webhook("https:///nohost"));
        assert!(!valid_webhook("https://a b/"));
        assert!(valid_tenant("acme-1.eu_west"));
        assert!(!valid_tenant("acme/other"));
        assert!(!valid_tenant(""));
    }

    #[test]
    fn csv_header_matches_rows() {
        let h = csv_header();
        assert_eq!(h.trim_end().split(',').count(), CSV_COLUMNS.len());
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_evaluate_are_quoted() {
        // (cell, as exported)
        let table = [
            (
                "=HYPERLINK(\"http://x/\",\"y\")",
                "'=HYPERLINK(\"http://x/\",\"y\")",
            ),
            ("+12125550142", "'+12125550142"),
            ("-2+3 <sip:a@b>", "'-2+3 <sip:a@b>"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("'=already", "'=already"),
            ("phone/1 =x", "phone/1 =x"),
            (" =1+1", " =1+1"),
            (
                "sip:+12125550142@example.com",
                "sip:+12125550142@example.com",
            ),
            ("2024-05-01T00:00:00Z", "2024-05-01T00:00:00Z"),
            ("200", "200"),
            ("", ""),
        ];
        for (cell, want) in table {
            assert_eq!(csv_cell(cell.to_string()), want, "{cell:?}");
        }
        // Through a whole line: every column, the CSV quoting on top.
        let mut r: CallRecord = serde_json::from_value(json!({
            "id": "1", "tenant": "=t", "kind": "emergency", "call_id": "-c",
            "caller_number": "+12125550142", "caller_uri": "sip:x@h", "from": "@f",
            "pai": "+p", "dialed": "911", "request_uri": "sip:911@h", "invite_ms": 0,
            "answer_ms": null, "end_ms": null, "duration_ms": null, "final_status": null,
            "outcome": "open", "route": "psap", "reason": "r", "trunk": "=HYPERLINK(1)",
            "psap_id": null, "attempts": [], "country": "US", "location_source": "none",
            "location": null, "registered_address": null, "source_ip": "127.0.0.1",
            "source_port": 5060, "transport": "udp", "user_agent": "=cmd|' /C calc'!A0",
        }))
        .unwrap();
        r.warnings = vec!["-x".into()];
        let mut line = String::new();
        csv_line(&mut line, &r);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(row.len(), CSV_COLUMNS.len());
        for (name, cell) in CSV_COLUMNS.iter().zip(row.iter()) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{name}: {cell:?}"
            );
        }
        assert_eq!(&row[28], "'=cmd|' /C calc'!A0");
        assert_eq!(&row[4], "'+12125550142");
    }

    #[test]
    fn the_service_is_the_last_csv_column() {
        assert_eq!(CSV_COLUMNS.last(), Some(&"service"));
        // The columns before it are where they were.
        assert_eq!(CSV_COLUMNS[29], "warnings");
        let line = |service: Value| {
            let r: CallRecord = serde_json::from_value(json!({
                "id": "1", "kind": "emergency", "call_id": "c", "caller_uri": "sip:x@h",
                "from": "f", "dialed": "112", "request_uri": "sip:112@h", "invite_ms": 0,
                "outcome": "open", "route": "psap", "reason": "r", "attempts": [],
                "location_source": "none", "source_ip": "127.0.0.1", "source_port": 5060,
                "transport": "udp", "service": service,
            }))
            .unwrap();
            let mut line = String::new();
            csv_line(&mut line, &r);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_bytes());
            let row = reader.records().next().unwrap().unwrap();
            assert_eq!(row.len(), CSV_COLUMNS.len());
            (row[8].to_owned(), row[30].to_owned())
        };
        assert_eq!(
            line(json!("urn:service:sos.police")),
            ("112".to_owned(), "urn:service:sos.police".to_owned())
        );
        assert_eq!(line(Value::Null), ("112".to_owned(), String::new()));
    }

    /// The record keeps its location and registered address as JSON text;
    /// the export gives them as it gave the values: compact text in the
    /// CSV, nested values in the JSON, whatever spacing the database kept
    /// (PostgreSQL's `jsonb` adds spaces to the records it closes).
    #[test]
    fn the_location_and_registered_address_export_as_their_values() {
        let location = json!({
            "source": "pidf-civic", "method": "Manual",
            "civic": {"country": "US", "A1": "CA", "A3": "San Francisco", "HNO": "1"},
            "geo": {"lat": 37.7793, "lon": -122.4193, "radius_m": 12.5},
            "psap_decided_by": "lost", "lost_why": "timeout \"x\", é",
        });
        let registered = json!({"civic": {"RD": "Dr Carlton B Goodlett", "A3": "San Francisco"}});
        let stored = json!({
            "id": "1", "kind": "emergency", "call_id": "c", "caller_uri": "sip:x@h",
            "from": "f", "dialed": "911", "request_uri": "sip:911@h", "invite_ms": 0,
            "outcome": "interrupted", "route": "psap", "reason": "r", "attempts": [],
            "location_source": "pidf", "location": location,
            "registered_address": registered, "source_ip": "127.0.0.1",
            "source_port": 5060, "transport": "udp",
        });
        for text in [
            serde_json::to_string(&stored).unwrap(),
            serde_json::to_string_pretty(&stored).unwrap(),
        ] {
            let r: CallRecord = serde_json::from_str(&text).unwrap();
            let mut line = String::new();
            csv_line(&mut line, &r);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_bytes());
            let row = reader.records().next().unwrap().unwrap();
            assert_eq!(CSV_COLUMNS[23], "location");
            assert_eq!(row[23], location.to_string());
            assert_eq!(row[24], registered.to_string());
            let exported = record_json(&r);
            assert_eq!(exported["location"], location);
            assert_eq!(exported["registered_address"], registered);
            // The keys in the order they were written.
            let keys: Vec<&String> = exported["location"].as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "source",
                    "method",
                    "civic",
                    "geo",
                    "psap_decided_by",
                    "lost_why"
                ]
            );
            // Written again, the record is the compact text of the values.
            let again = serde_json::to_string(&r).unwrap();
            assert!(
                again.contains(&format!("\"location\":{location}")),
                "{again}"
            );
            let again: Value = serde_json::from_str(&again).unwrap();
            assert_eq!(again["location"], location);
            assert_eq!(again["registered_address"], registered);
        }
    }
}
