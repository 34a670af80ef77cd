//! Host bindings of the `runnel:plugin` WIT package, one module per role world. The
//! shared `types` and `host` interfaces are generated once (with the parser world) and
//! reused by the others, so one linker and one set of types serve every role.

pub mod parser {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "parser-plugin",
    });
}

pub use parser::runnel::plugin::{host, state, types};

pub mod interceptor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "interceptor-plugin",
        with: {
            "runnel:plugin/types": crate::plugin::bindings::types,
            "runnel:plugin/host": crate::plugin::bindings::host,
            "runnel:plugin/state": crate::plugin::bindings::state,
        },
    });
}

pub mod cleaner {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cleaner-plugin",
        with: {
            "runnel:plugin/types": crate::plugin::bindings::types,
            "runnel:plugin/host": crate::plugin::bindings::host,
            "runnel:plugin/state": crate::plugin::bindings::state,
        },
    });
}

pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router-plugin",
        with: {
            "runnel:plugin/types": crate::plugin::bindings::types,
            "runnel:plugin/host": crate::plugin::bindings::host,
            "runnel:plugin/state": crate::plugin::bindings::state,
        },
    });
}

pub mod processor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "processor-plugin",
        with: {
            "runnel:plugin/types": crate::plugin::bindings::types,
            "runnel:plugin/host": crate::plugin::bindings::host,
            "runnel:plugin/state": crate::plugin::bindings::state,
        },
    });
}
