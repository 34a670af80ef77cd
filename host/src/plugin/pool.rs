//! Instances shared by every source whose chain uses a plugin. A source's worker takes
//! an instance for one batch ([`InstancePool::lease`]) and gives it back after; at most
//! `max` instances exist per plugin (one per core by default), so 64 sources with a
//! two-plugin chain hold a few instances instead of 128, each with the linear memory it
//! grew to. The pool also makes hot reload take effect: an instance of an older version
//! is never handed out again.

use super::reload::PluginSlot;
use super::{PluginError, PluginInstance};
use crate::metrics::PluginCounters;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct Idle {
    instances: Vec<(u64, PluginInstance)>,
    /// Instances in existence: idle plus leased.
    count: usize,
}

pub struct InstancePool {
    slot: Arc<PluginSlot>,
    /// What the plugin's `host.counter` calls add to (one set per plugin).
    counters: Arc<PluginCounters>,
    max: usize,
    /// A router's routes (a reload may not change them).
    routes: Vec<String>,
    idle: Mutex<Idle>,
    returned: Condvar,
}

/// An instance taken from the pool for one batch; given back when dropped.
pub struct Lease<'a> {
    pool: &'a InstancePool,
    generation: u64,
    instance: Option<PluginInstance>,
}

impl InstancePool {
    /// A pool of at most `max` instances of the plugin in `slot`, holding `first` (an
    /// instance of the slot's current version, made to prove that it starts).
    pub fn new(
        slot: Arc<PluginSlot>,
        counters: Arc<PluginCounters>,
        first: PluginInstance,
        max: usize,
    ) -> Self {
        let generation = slot.generation();
        Self {
            routes: first.routes().to_vec(),
            slot,
            counters,
            max: max.max(1),
            idle: Mutex::new(Idle {
                instances: vec![(generation, first)],
                count: 1,
            }),
            returned: Condvar::new(),
        }
    }

    pub fn slot(&self) -> &Arc<PluginSlot> {
        &self.slot
    }

    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// An instance of the plugin's current version: an idle one, a new one while there
    /// are fewer than `max`, or the next one given back.
    pub fn lease(&self) -> Result<Lease<'_>, PluginError> {
        let generation = self.slot.generation();
        let mut idle = self.lock();
        loop {
            // Instances of an older version are dropped as they are found.
            while let Some((g, instance)) = idle.instances.pop() {
                if g == generation {
                    return Ok(Lease {
                        pool: self,
                        generation,
                        instance: Some(instance),
                    });
                }
                idle.count -= 1;
            }
            if idle.count < self.max {
                idle.count += 1;
                drop(idle);
                let (plugin, generation) = self.slot.current();
                return match plugin.instantiate(self.counters.clone()) {
                    Ok(instance) => Ok(Lease {
                        pool: self,
                        generation,
                        instance: Some(instance),
                    }),
                    Err(e) => {
                        self.lock().count -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = PluginInstance;

    fn deref(&self) -> &PluginInstance {
        self.instance.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PluginInstance {
        self.instance.as_mut().expect("present until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut idle = self.pool.lock();
        match self.instance.take() {
            Some(instance) if self.generation == self.pool.slot.generation() => {
                idle.instances.push((self.generation, instance));
            }
            _ => idle.count -= 1,
        }
        drop(idle);
        self.pool.returned.notify_one();
    }
}
