//! The plugins shipped inside the agent binary (guest-plugins/, built for wasm32-wasip2).
//! Configs name them with `builtin = "NAME"`.

/// A shipped plugin.
pub struct Builtin {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

macro_rules! builtin {
    ($name:literal, $file:literal) => {
        Builtin {
            name: $name,
            wasm: include_bytes!(concat!(env!("RUNNEL_PLUGIN_DIR"), "/", $file)),
        }
    };
}

static BUILTINS: &[Builtin] = &[
    builtin!("combined", "runnel_plugin_combined.wasm"),
    builtin!("json", "runnel_plugin_json.wasm"),
    builtin!("regex", "runnel_plugin_regex.wasm"),
    builtin!("level-router", "runnel_plugin_level_router.wasm"),
    builtin!("strip-control", "runnel_plugin_strip_control.wasm"),
    builtin!("host-timestamp", "runnel_plugin_host_timestamp.wasm"),
    builtin!("field-filter", "runnel_plugin_field_filter.wasm"),
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}
