//! Where the running router finds the current inventory snapshot and the
//! tenants' security desk webhooks. The store publishes here after every
//! change it commits or learns of; the driver, subscribed, hands each new
//! snapshot to the proxy core, and calls in progress keep the targets
//! they were given.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::inventory::{Changes, Inventory, SharedInventory};

/// Security desk webhook URLs by tenant.
pub type SecurityDesks = HashMap<String, String>;

/// The published state (see the module documentation).
pub struct Hub {
    inventory: watch::Sender<SharedInventory>,
    desks: ArcSwap<SecurityDesks>,
    version: AtomicI64,
    loaded: AtomicBool,
    /// Numbers read so far by the first load.
    progress: AtomicU64,
    /// Why the first load has not succeeded yet, when it failed.
    load_error: Mutex<Option<String>>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            inventory: watch::Sender::new(Arc::new(Inventory::empty())),
            desks: Default::default(),
            version: AtomicI64::new(0),
            loaded: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            load_error: Mutex::new(None),
        }
    }
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// The current inventory snapshot.
    pub fn inventory(&self) -> SharedInventory {
        self.inventory.borrow().clone()
    }

    /// Every snapshot published from now on (the current one counts as
    /// seen).
    pub fn subscribe(&self) -> watch::Receiver<SharedInventory> {
        self.inventory.subscribe()
    }

    /// Every tenant's security desk webhook, as last loaded.
    pub fn security_desks(&self) -> Arc<SecurityDesks> {
        self.desks.load_full()
    }

    /// One tenant's security desk webhook URL.
    pub fn security_desk(&self, tenant: &str) -> Option<String> {
        self.desks.load().get(tenant).cloned()
    }

    /// The database's inventory version the snapshot was built from.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether a snapshot was loaded from the database yet.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Numbers read so far by the first load (the total once loaded).
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Counts numbers read by the first load.
    pub fn add_progress(&self, n: u64) {
        if !self.loaded() {
            self.progress.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Why the first load failed, while it has not succeeded.
    pub fn load_error(&self) -> Option<String> {
        self.load_error.lock().ok().and_then(|e| e.clone())
    }

    /// Records why a load failed (`None` once one succeeded).
    pub fn set_load_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.load_error.lock() {
            *e = error;
        }
    }

    /// Publishes a new snapshot and webhooks, built from `version`.
    pub fn publish(&self, inventory: Inventory, desks: SecurityDesks, version: i64) {
        self.desks.store(Arc::new(desks));
        self.version.store(version, Ordering::Release);
        self.progress
            .store(inventory.len() as u64, Ordering::Relaxed);
        self.inventory.send_replace(Arc::new(inventory));
        self.loaded.store(true, Ordering::Release);
        self.set_load_error(None);
    }

    /// Publishes the current snapshot with `changes` applied (numbers and
    /// locations not named are shared with it), the webhooks when they
    /// were reloaded (`None` keeps them), built from `version`.
    pub fn apply(&self, changes: &Changes, desks: Option<SecurityDesks>, version: i64) {
        let next = self.inventory().with_changes(changes);
        let desks = desks.unwrap_or_else(|| (*self.security_desks()).clone());
        self.publish(next, desks, version);
    }

    /// Records that the database's version moved with nothing to apply (a
    /// write that changed nothing).
    pub fn set_version(&self, version: i64) {
        self.version.store(version, Ordering::Release);
    }
}
