//! Heavy database work (a whole inventory load, a bulk upload) on a thread
//! of its own, with a connection of its own: the router's runtime is one
//! thread that also relays every SIP message, and not one row of a
//! ten-million-row read is decoded there.

use std::future::Future;

use sqlx::{AnyConnection, Connection};

use super::StoreError;

/// Runs `work` on a new thread with its own runtime and a new connection
/// to `url`, and gives back what it returned.
pub(super) async fn run<T, F, Fut>(url: &str, name: &str, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(AnyConnection) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let url = url.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async move {
                    let mut conn = AnyConnection::connect(&url).await?;
                    if conn.backend_name() == "SQLite" {
                        // A transaction of a million rows spills pages
                        // from SQLite's default cache (2 MB) again and
                        // again: 256 MB for this connection, while it
                        // lasts.
                        sqlx::query("PRAGMA cache_size = -262144")
                            .execute(&mut conn)
                            .await?;
                    }
                    work(conn).await
                }),
                Err(e) => Err(StoreError::Other(anyhow::anyhow!(
                    "cannot start a runtime for the database work: {e}"
                ))),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| StoreError::Other(anyhow::anyhow!("cannot start a thread: {e}")))?;
    rx.await.map_err(|_| {
        StoreError::Other(anyhow::anyhow!(
            "the database work's thread ended without an answer"
        ))
    })?
}

/// Gives the memory a whole load freed back to the system: glibc keeps
/// freed memory in its arenas, and after reading ten million rows that is
/// gigabytes the process would go on holding.
pub(crate) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
