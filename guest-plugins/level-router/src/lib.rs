//! `level-router`: chooses routes by event level.
//!
//! ```toml
//! [plugins.by-level]
//! builtin = "level-router"
//! [plugins.by-level.config.routes]
//! alerts = ["error", "fatal"]
//! everything_but_debug = ["info", "warn", "error", "fatal", "unknown"]
//! ```
//!
//! An event goes to every route whose list holds its level; when no list holds it, the
//! mask is 0 and the event goes to the source's default channels. Without config the
//! routes are one per level, named `trace`, `debug`, `info`, `warn`, `error`, `fatal`
//! and `unknown`.
//!
//! Config:
//!
//! - `routes` (optional): a table of route name → list of level names, at most 64
//!   routes, in the order the router reports them. Level names are `trace`, `debug`,
//!   `info`, `warn`, `error`, `fatal` and `unknown` (any case; `warning`, `err`,
//!   `critical`, `crit`, `emerg`, `alert` and `panic` are accepted as aliases).
//!
//! Fields: none are read or written.

use runnel_plugin_sdk::types::{Batch, Level};
use runnel_plugin_sdk::{Config, Value, level_by_name, level_name};

/// The config keys.
const KEYS: &[&str] = &["routes"];

/// The most routes a router may have (one bit each in a `u64` mask).
const MAX_ROUTES: usize = 64;

/// Every level, in the order of [`level_index`].
const LEVELS: [Level; 7] = [
    Level::Trace,
    Level::Debug,
    Level::Info,
    Level::Warn,
    Level::Error,
    Level::Fatal,
    Level::Unknown,
];

/// A configured router: its route names and, per level, the mask of routes it chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelRouter {
    names: Vec<String>,
    masks: [u64; 7],
}

impl LevelRouter {
    /// Reads the config; errors name the offending key.
    pub fn new(config: &Config) -> Result<Self, String> {
        Self::build(config).map_err(|e| format!("level-router: {e}"))
    }

    fn build(config: &Config) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        match config.table("routes")? {
            None => Ok(Self::one_route_per_level()),
            Some(routes) => Self::from_routes(routes),
        }
    }

    fn one_route_per_level() -> Self {
        Self {
            names: LEVELS.iter().map(|&l| level_name(l).to_owned()).collect(),
            masks: std::array::from_fn(|bit| 1 << bit),
        }
    }

    fn from_routes(routes: &[(String, Value)]) -> Result<Self, String> {
        if routes.is_empty() {
            return Err("config: `routes` names no route".into());
        }
        if routes.len() > MAX_ROUTES {
            return Err(format!(
                "config: `routes` names {} routes; at most {MAX_ROUTES} are allowed",
                routes.len()
            ));
        }
        let mut masks = [0u64; 7];
        for (bit, (name, levels)) in routes.iter().enumerate() {
            for level in route_levels(name, levels)? {
                masks[level_index(level)] |= 1 << bit;
            }
        }
        Ok(Self {
            names: routes.iter().map(|(name, _)| name.clone()).collect(),
            masks,
        })
    }

    /// The route names, in config order (bit i of a mask is `routes()[i]`).
    pub fn routes(&self) -> &[String] {
        &self.names
    }

    /// The mask for one level.
    pub fn mask(&self, level: Level) -> u64 {
        self.masks[level_index(level)]
    }

    /// One mask per event of `batch`, in order.
    pub fn route(&self, batch: &Batch) -> Vec<u64> {
        batch.events.iter().map(|e| self.mask(e.level)).collect()
    }
}

/// The levels listed for route `name`.
fn route_levels(name: &str, levels: &Value) -> Result<Vec<Level>, String> {
    let Value::Array(items) = levels else {
        return Err(format!(
            "config: `routes.{name}` must be a list of level names, got {}",
            levels.type_name()
        ));
    };
    items
        .iter()
        .map(|item| {
            item.as_str().and_then(level_by_name).ok_or_else(|| {
                format!(
                    "config: `routes.{name}` holds {}, which is not a level name \
                     (trace, debug, info, warn, error, fatal, unknown)",
                    describe(item)
                )
            })
        })
        .collect()
}

fn describe(value: &Value) -> String {
    match value {
        Value::Str(s) => format!("`{s}`"),
        other => format!("a value of type {}", other.type_name()),
    }
}

fn level_index(level: Level) -> usize {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
        Level::Fatal => 5,
        Level::Unknown => 6,
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::router::{Guest, GuestInstance, Instance};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::LevelRouter;
    }

    impl GuestInstance for super::LevelRouter {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)
                .map_err(|e| format!("level-router: {e}"))?;
            Ok(Instance::new(super::LevelRouter::new(&config)?))
        }

        fn routes(&self) -> Vec<String> {
            super::LevelRouter::routes(self).to_vec()
        }

        fn route(&self, input: Batch) -> Vec<u64> {
            super::LevelRouter::route(self, &input)
        }

        /// No fields: routes by the events' level.
        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }
    }

    runnel_plugin_sdk::export_router!(Plugin with_types_in runnel_plugin_sdk::bindings::router);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::BatchBuilder;

    fn s(text: &str) -> Value {
        Value::Str(text.to_owned())
    }

    fn list(names: &[&str]) -> Value {
        Value::Array(names.iter().map(|n| s(n)).collect())
    }

    fn routes_config(routes: Vec<(String, Value)>) -> Config {
        Config::from_members(vec![("routes".to_owned(), Value::Object(routes))])
    }

    fn router(routes: &[(&str, Value)]) -> Result<LevelRouter, String> {
        LevelRouter::new(&routes_config(
            routes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
    }

    fn batch(levels: &[Level]) -> Batch {
        let mut b = BatchBuilder::new();
        for &level in levels {
            b.event("line", &Value::Object(vec![])).level(level);
        }
        b.finish()
    }

    #[test]
    fn default_is_one_route_per_level() {
        let r = LevelRouter::new(&Config::empty()).unwrap();
        assert_eq!(
            r.routes(),
            [
                "trace", "debug", "info", "warn", "error", "fatal", "unknown"
            ]
        );
        assert_eq!(r.route(&batch(&LEVELS)), vec![1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn configured_routes_keep_their_order_and_overlap() {
        let r = router(&[
            ("loud", list(&["error", "FATAL", "Warning"])),
            (
                "all",
                list(&[
                    "trace", "debug", "info", "warn", "error", "fatal", "unknown",
                ]),
            ),
            ("errors", list(&["err", "crit"])),
            ("never", list(&[])),
        ])
        .unwrap();
        assert_eq!(r.routes(), ["loud", "all", "errors", "never"]);
        let masks = r.route(&batch(&[
            Level::Info,
            Level::Warn,
            Level::Error,
            Level::Fatal,
            Level::Unknown,
        ]));
        assert_eq!(masks, vec![0b0010, 0b0011, 0b0111, 0b0111, 0b0010]);
    }

    #[test]
    fn levels_in_no_route_get_mask_zero() {
        let r = router(&[("errors", list(&["error"]))]).unwrap();
        assert_eq!(
            r.route(&batch(&[Level::Debug, Level::Error, Level::Unknown])),
            vec![0, 1, 0]
        );
        assert!(r.route(&batch(&[])).is_empty());
    }

    #[test]
    fn sixty_four_routes_use_every_bit() {
        let routes: Vec<(String, Value)> = (0..64)
            .map(|i| (format!("r{i}"), list(if i == 63 { &["info"] } else { &[] })))
            .collect();
        let r = LevelRouter::new(&routes_config(routes)).unwrap();
        assert_eq!(r.routes().len(), 64);
        assert_eq!(r.mask(Level::Info), 1 << 63);
    }

    #[test]
    fn bad_config_names_the_key() {
        let routes: Vec<(String, Value)> = (0..65)
            .map(|i| (format!("r{i}"), list(&["info"])))
            .collect();
        assert_eq!(
            LevelRouter::new(&routes_config(routes)).unwrap_err(),
            "level-router: config: `routes` names 65 routes; at most 64 are allowed"
        );
        assert_eq!(
            router(&[("a", list(&["info", "verbose"]))]).unwrap_err(),
            "level-router: config: `routes.a` holds `verbose`, which is not a level name \
             (trace, debug, info, warn, error, fatal, unknown)"
        );
        assert_eq!(
            router(&[("a", Value::Array(vec![Value::Int(3)]))]).unwrap_err(),
            "level-router: config: `routes.a` holds a value of type integer, which is not a \
             level name (trace, debug, info, warn, error, fatal, unknown)"
        );
        assert_eq!(
            router(&[("a", s("info"))]).unwrap_err(),
            "level-router: config: `routes.a` must be a list of level names, got string"
        );
        assert_eq!(
            router(&[]).unwrap_err(),
            "level-router: config: `routes` names no route"
        );
        let bad_type = Config::from_members(vec![("routes", list(&["info"]))]);
        assert_eq!(
            LevelRouter::new(&bad_type).unwrap_err(),
            "level-router: config: `routes` must be a table, got array"
        );
        let unknown = Config::from_members(vec![("route", Value::Null)]);
        assert!(
            LevelRouter::new(&unknown)
                .unwrap_err()
                .starts_with("level-router: config: unknown key `route`")
        );
    }
}
