//! Bulk uploads, for operators: `POST /v1/uploads` takes a body of any
//! size as a stream, writes it to `data_dir/uploads`, and applies it off
//! the request ([`crate::store::bulk`]); `GET /v1/uploads/{id}` says how
//! far it is. The body is kept on disk rather than applied as it comes, so
//! that a slow sender never holds the database's write transaction open.
//!
//! `?tenant=T` makes every row T's (a row's `tenant` cell must then name
//! it); without it each row names its tenant, so a carrier's whole
//! inventory is one upload. `?wait=true` answers when the upload is
//! applied or refused, instead of at once with 202.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{actor, operator_only, upload_format, Api, ApiError, ApiResult};
use crate::admin::auth::Principal;
use crate::store::bulk::{Progress, Refused, Stage, Tenants};
use crate::store::rows::UploadSummary;
use crate::store::upload::{valid_tenant, RowError};

/// Uploads remembered for `GET /v1/uploads/{id}`: the latest ones.
const KEPT: usize = 100;

/// The uploads of this process.
#[derive(Default)]
pub(super) struct Uploads {
    jobs: Mutex<VecDeque<Arc<Job>>>,
}

impl Uploads {
    fn add(&self, job: Arc<Job>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            // An upload under way is never forgotten.
            while jobs.len() >= KEPT {
                match jobs.iter().position(|j| j.finished()) {
                    Some(i) => {
                        jobs.remove(i);
                    }
                    None => break,
                }
            }
            jobs.push_back(job);
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().ok()?.iter().find(|j| j.id == id).cloned()
    }
}

/// One upload.
struct Job {
    id: String,
    tenant: Option<String>,
    by: String,
    started_ms: i64,
    started: Instant,
    progress: Arc<Progress>,
    outcome: Mutex<Option<Outcome>>,
    done: tokio::sync::watch::Sender<bool>,
}

enum Outcome {
    Applied(UploadSummary, u64),
    Refused {
        status: StatusCode,
        message: String,
        rows: Vec<RowError>,
        count: u64,
    },
}

impl Job {
    fn finished(&self) -> bool {
        matches!(self.progress.stage(), Stage::Done | Stage::Failed)
    }

    fn finish(&self, outcome: Outcome) {
        self.progress.set(match outcome {
            Outcome::Applied(..) => Stage::Done,
            Outcome::Refused { .. } => Stage::Failed,
        });
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(outcome);
        }
        self.done.send_replace(true);
    }

    /// The status document, and the HTTP status of a finished upload.
    fn status(&self) -> (StatusCode, Value) {
        let p = &self.progress;
        let mut v = json!({
            "id": self.id,
            "state": p.stage().as_str(),
            "tenant": self.tenant,
            "by": self.by,
            "started_ms": self.started_ms,
            "elapsed_ms": self.started.elapsed().as_millis() as u64,
            "bytes": p.bytes.load(Ordering::Relaxed),
            "rows_checked": p.checked.load(Ordering::Relaxed),
            "rows_applied": p.applied.load(Ordering::Relaxed),
        });
        let mut code = StatusCode::OK;
        if let Ok(o) = self.outcome.lock() {
            match &*o {
                Some(Outcome::Applied(s, ms)) => {
                    v["summary"] = json!(s);
                    v["elapsed_ms"] = json!(ms);
                }
                Some(Outcome::Refused {
                    status,
                    message,
                    rows,
                    count,
                }) => {
                    code = *status;
                    v["error"] = json!(message);
                    if *count > 0 {
                        v["rows"] = json!(rows);
                        v["row_errors"] = json!(count);
                    }
                }
                None => {}
            }
        }
        (code, v)
    }
}

/// `POST /v1/uploads`.
pub(super) async fn post_upload(
    State(api): State<Arc<Api>>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    operator_only(&p, "upload numbers in bulk")?;
    let tenants = match q.get("tenant") {
        Some(t) if valid_tenant(t) => Tenants::One(t.clone()),
        Some(t) => {
            return Err(ApiError::bad(format!(
                "tenant {t:?}: 1 to 64 letters, digits, '.', '_' or '-'"
            )))
        }
        None => Tenants::PerRow,
    };
    let format = upload_format(&headers)?;
    let wait = q.get("wait").is_some_and(|v| v == "true" || v == "1");
    let id = format!("{:016x}", rand::random::<u64>());
    let job = Arc::new(Job {
        id: id.clone(),
        tenant: match &tenants {
            Tenants::One(t) => Some(t.clone()),
            Tenants::PerRow => None,
        },
        by: p.name.clone(),
        started_ms: crate::store::now_ms(),
        started: Instant::now(),
        progress: Arc::new(Progress::default()),
        outcome: Mutex::new(None),
        done: tokio::sync::watch::Sender::new(false),
    });
    api.uploads.add(job.clone());
    let dir = api.store.data_dir().join("uploads");
    let path = dir.join(format!("{id}.body"));
    if let Err(e) = spool(&dir, &path, body, &job.progress).await {
        let _ = tokio::fs::remove_file(&path).await;
        let message = format!("the body was not received whole: {e}; nothing was changed");
        tracing::warn!(upload = %id, by = %p.name, error = %e, "bulk upload not received");
        job.finish(Outcome::Refused {
            status: StatusCode::BAD_REQUEST,
            message: message.clone(),
            rows: Vec::new(),
            count: 0,
        });
        return Err(ApiError::bad(message).with("id", json!(id)));
    }
    tracing::info!(
        upload = %id,
        by = %p.name,
        bytes = job.progress.bytes.load(Ordering::Relaxed),
        "bulk upload received; applying it"
    );
    let (store, who, rules) = (api.store.clone(), actor(&p), api.rules.load_full());
    let ecrf = api.ecrf();
    let worker = job.clone();
    let mut done = job.done.subscribe();
    tokio::spawn(async move {
        let (rules, _) =
            crate::admin::ecrf_check::rules_for_file(ecrf, rules, &path, format, &tenants).await;
        let r = store
            .bulk_upload(
                &path,
                format,
                tenants,
                &who,
                &rules,
                worker.progress.clone(),
            )
            .await;
        let _ = tokio::fs::remove_file(&path).await;
        if r.is_ok() {
            store.refresh_after_write().await;
        }
        let ms = worker.started.elapsed().as_millis() as u64;
        let outcome = match r {
            Ok(summary) => {
                tracing::info!(upload = %worker.id, by = %who.name, created = summary.created, updated = summary.updated,
                    unchanged = summary.unchanged, locations = summary.locations, elapsed_ms = ms, "bulk upload applied");
                Outcome::Applied(summary, ms)
            }
            Err(Refused::Malformed(m)) => Outcome::Refused {
                status: StatusCode::BAD_REQUEST,
                message: format!("{m}; nothing was changed"),
                rows: Vec::new(),
                count: 0,
            },
            Err(Refused::Rows { listed, count }) => Outcome::Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("{count} row(s) cannot be applied; nothing was changed"),
                rows: listed,
                count,
            },
            Err(Refused::Store(e)) => {
                tracing::error!(upload = %worker.id, error = %e, "bulk upload: database failure");
                Outcome::Refused {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the database failed; nothing was changed".into(),
                    rows: Vec::new(),
                    count: 0,
                }
            }
        };
        if let Outcome::Refused { message, count, .. } = &outcome {
            tracing::info!(upload = %worker.id, by = %who.name, row_errors = count, reason = %message, "bulk upload refused");
        }
        worker.finish(outcome);
    });
    if wait {
        let _ = done.wait_for(|d| *d).await;
        let (code, v) = job.status();
        return Ok((code, axum::Json(v)).into_response());
    }
    let (_, v) = job.status();
    let mut r = (StatusCode::ACCEPTED, axum::Json(v)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/uploads/{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Writes the body to `path` as it comes, counting it.
async fn spool(
    dir: &std::path::Path,
    path: &std::path::Path,
    body: Body,
    progress: &Progress,
) -> Result<(), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let f = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut f = tokio::io::BufWriter::with_capacity(1 << 20, f);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        f.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        progress
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    f.flush()
        .await
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// `GET /v1/uploads/{id}`.
pub(super) async fn get_upload(
    State(api): State<Arc<Api>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    operator_only(&p, "read bulk uploads")?;
    let job = api.uploads.get(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no upload {id:?} here (this router remembers its latest {KEPT}, since it started)"
            ),
        )
    })?;
    let (_, v) = job.status();
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}
