//! `versioned-router`: a test fixture router for hot reload, whose routes depend on the
//! number written in the plugin's own binary after the marker `RUNNEL-ROUTER-VERSION:`
//! (five ASCII digits). Tests make new versions by patching those digits in the `.wasm`
//! file (as with the `versioned` parser fixture, whose marker differs).
//!
//! - Versions below [`OTHER_ROUTES_FROM`] report the routes `even` and `odd` and send an
//!   event to `even` when its body's length in bytes is even, to `odd` otherwise.
//! - Versions from [`OTHER_ROUTES_FROM`] on report `even`, `odd` and `other`, and send
//!   every event to `other` only: if such a version were ever swapped in over one wired
//!   for two routes, no event would reach `even` or `odd` any more.
//!
//! Config: none.

use runnel_plugin_sdk::types::Batch;

/// The marker and the digits the tests patch. Read through `black_box`, so the digits
/// are read from the binary's data at run time, not folded in at compile time.
#[used]
static VERSION: [u8; 27] = *b"RUNNEL-ROUTER-VERSION:00001";

/// Where the digits start in [`VERSION`].
const DIGITS_AT: usize = 22;

/// The first version with the routes `even`, `odd` and `other`.
pub const OTHER_ROUTES_FROM: u32 = 100;

/// The version written in the binary (0 if the digits are not digits).
pub fn version() -> u32 {
    let bytes = std::hint::black_box(&VERSION);
    bytes[DIGITS_AT..]
        .iter()
        .try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
        .unwrap_or(0)
}

/// The routes version `version` reports, in order (bit i of a mask is route i).
pub fn routes(version: u32) -> Vec<String> {
    let mut names = vec!["even".to_owned(), "odd".to_owned()];
    if version >= OTHER_ROUTES_FROM {
        names.push("other".to_owned());
    }
    names
}

/// One mask per event of `batch`, as version `version` routes them.
pub fn route(version: u32, batch: &Batch) -> Vec<u64> {
    batch
        .events
        .iter()
        .map(|event| {
            if version >= OTHER_ROUTES_FROM {
                0b100
            } else if runnel_plugin_sdk::span_bytes(&batch.arena, event.body).len() % 2 == 0 {
                0b01
            } else {
                0b10
            }
        })
        .collect()
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::router::{Guest, GuestInstance, Instance};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    /// The instance: the version read once, at `create`.
    struct VersionedRouter {
        version: u32,
    }

    impl Guest for Plugin {
        type Instance = VersionedRouter;
    }

    impl GuestInstance for VersionedRouter {
        fn create(config: Tree) -> Result<Instance, String> {
            runnel_plugin_sdk::Config::from_tree(&config)
                .and_then(|c| c.deny_unknown(&[]))
                .map_err(|e| format!("versioned-router: {e}"))?;
            Ok(Instance::new(VersionedRouter {
                version: super::version(),
            }))
        }

        fn routes(&self) -> Vec<String> {
            super::routes(self.version)
        }

        fn route(&self, input: Batch) -> Vec<u64> {
            super::route(self.version, &input)
        }

        /// No fields: routes by the body.
        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }
    }

    runnel_plugin_sdk::export_router!(Plugin with_types_in runnel_plugin_sdk::bindings::router);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value};

    fn batch(bodies: &[&str]) -> Batch {
        let mut b = BatchBuilder::new();
        for body in bodies {
            b.event(body, &Value::Object(vec![]));
        }
        b.finish()
    }

    #[test]
    fn the_version_is_read_from_the_marker() {
        assert_eq!(version(), 1);
    }

    #[test]
    fn versions_below_100_route_by_body_length() {
        assert_eq!(routes(1), ["even", "odd"]);
        assert_eq!(routes(99), ["even", "odd"]);
        assert_eq!(route(2, &batch(&["ab", "abc", ""])), vec![0b01, 0b10, 0b01]);
    }

    #[test]
    fn versions_from_100_have_another_route_and_use_only_it() {
        assert_eq!(routes(100), ["even", "odd", "other"]);
        assert_eq!(route(100, &batch(&["ab", "abc"])), vec![0b100, 0b100]);
    }
}
