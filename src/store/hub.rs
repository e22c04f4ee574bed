//! Where the running router finds the current inventory snapshot and the
//! tenants' security desk webhooks. The store publishes here after every
//! change it commits or learns of; routers attached here get each new
//! snapshot swapped in, and calls in progress keep the snapshot they had.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;

use crate::emergency::EmergencyRouter;
use crate::inventory::{Inventory, SharedInventory};
use crate::metrics as m;

/// Security desk webhook URLs by tenant.
pub type SecurityDesks = HashMap<String, String>;

/// The published state (see the module documentation).
#[derive(Default)]
pub struct Hub {
    inventory: ArcSwap<Inventory>,
    desks: ArcSwap<SecurityDesks>,
    routers: Mutex<Vec<Weak<EmergencyRouter>>>,
    version: AtomicI64,
    loaded: AtomicBool,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// The current inventory snapshot.
    pub fn inventory(&self) -> SharedInventory {
        self.inventory.load_full()
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

    /// Makes `router` route on the current snapshot and on every later one.
    ///
    /// Also sets the inventory gauge: the first snapshot is published when
    /// the database opens, before the metrics recorder is installed, and a
    /// gauge set without a recorder is lost. Routers are built (and
    /// attached) once the recorder exists, at the start and on every
    /// reload.
    pub fn attach(&self, router: &Arc<EmergencyRouter>) {
        let mut routers = self.routers.lock().unwrap_or_else(|e| e.into_inner());
        routers.retain(|r| r.strong_count() > 0);
        let inventory = self.inventory();
        set_gauge(&inventory);
        router.set_inventory(inventory);
        routers.push(Arc::downgrade(router));
    }

    /// Swaps in a new snapshot and webhooks, built from `version`.
    pub fn publish(&self, inventory: Inventory, desks: SecurityDesks, version: i64) {
        let inventory = Arc::new(inventory);
        let mut routers = self.routers.lock().unwrap_or_else(|e| e.into_inner());
        set_gauge(&inventory);
        self.inventory.store(inventory.clone());
        self.desks.store(Arc::new(desks));
        self.version.store(version, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        routers.retain(|r| match r.upgrade() {
            Some(router) => {
                router.set_inventory(inventory.clone());
                true
            }
            None => false,
        });
    }
}

/// Exports the size of the snapshot the routers use.
fn set_gauge(inventory: &Inventory) {
    metrics::gauge!(m::INVENTORY_NUMBERS).set(inventory.len() as f64);
}
