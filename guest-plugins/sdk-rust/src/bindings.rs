//! Generated bindings. The shared `types` and `host` interfaces are generated once (by the
//! `sdk` world) and reused by the four role worlds.

mod shared {
    wit_bindgen::generate!({
        path: "wit",
        world: "sdk",
        generate_all,
    });
}

pub use shared::runnel::plugin::host;
pub use shared::runnel::plugin::state;
pub use shared::runnel::plugin::types;

pub mod parser {
    wit_bindgen::generate!({
        path: "wit",
        world: "parser-plugin",
        with: {
            "runnel:plugin/types@0.2.0": crate::bindings::types,
            "runnel:plugin/host@0.2.0": crate::bindings::host,
            "runnel:plugin/state@0.2.0": crate::bindings::state,
        },
        pub_export_macro: true,
        export_macro_name: "export_parser",
        default_bindings_module: "runnel_plugin_sdk::bindings::parser",
    });
}

pub mod interceptor {
    wit_bindgen::generate!({
        path: "wit",
        world: "interceptor-plugin",
        with: {
            "runnel:plugin/types@0.2.0": crate::bindings::types,
            "runnel:plugin/host@0.2.0": crate::bindings::host,
            "runnel:plugin/state@0.2.0": crate::bindings::state,
        },
        pub_export_macro: true,
        export_macro_name: "export_interceptor",
        default_bindings_module: "runnel_plugin_sdk::bindings::interceptor",
    });
}

pub mod cleaner {
    wit_bindgen::generate!({
        path: "wit",
        world: "cleaner-plugin",
        with: {
            "runnel:plugin/types@0.2.0": crate::bindings::types,
            "runnel:plugin/host@0.2.0": crate::bindings::host,
            "runnel:plugin/state@0.2.0": crate::bindings::state,
        },
        pub_export_macro: true,
        export_macro_name: "export_cleaner",
        default_bindings_module: "runnel_plugin_sdk::bindings::cleaner",
    });
}

pub mod router {
    wit_bindgen::generate!({
        path: "wit",
        world: "router-plugin",
        with: {
            "runnel:plugin/types@0.2.0": crate::bindings::types,
            "runnel:plugin/host@0.2.0": crate::bindings::host,
            "runnel:plugin/state@0.2.0": crate::bindings::state,
        },
        pub_export_macro: true,
        export_macro_name: "export_router",
        default_bindings_module: "runnel_plugin_sdk::bindings::router",
    });
}

pub mod processor {
    wit_bindgen::generate!({
        path: "wit",
        world: "processor-plugin",
        with: {
            "runnel:plugin/types@0.2.0": crate::bindings::types,
            "runnel:plugin/host@0.2.0": crate::bindings::host,
            "runnel:plugin/state@0.2.0": crate::bindings::state,
        },
        pub_export_macro: true,
        export_macro_name: "export_processor",
        default_bindings_module: "runnel_plugin_sdk::bindings::processor",
    });
}
