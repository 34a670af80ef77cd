//! `combined`: parses Apache/nginx access log lines in the combined format (and the common
//! format, which lacks referrer and agent).
//!
//! ```text
//! 83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTTP/1.1" 200 203023 "http://x/" "Mozilla/5.0"
//! ```
//!
//! Fields: `host`, `ident`, `user`, `method`, `path`, `protocol` (or `request` when the
//! request line is not `METHOD PATH [PROTOCOL]`), `status` (int), `size` (int),
//! `referrer`, `agent`. A `-` becomes null. The bracketed time becomes the event
//! timestamp; the level is `error` for 5xx, `warn` for 4xx and `info` otherwise.
//!
//! Config: none.

pub mod line;

use line::{AccessLine, Request};
use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::{Level, Lines};
use runnel_plugin_sdk::{Key, Output};

/// Parses every body of `input`. This is the whole plugin: the WASM export calls it, and
/// benchmarks call it natively.
pub fn parse_lines(input: &Lines) -> ParseOutput {
    let mut out = Output::with_capacity(input.bodies.len(), 200, 12);
    let keys = Keys::new(&mut out);
    let mut results = Vec::with_capacity(input.bodies.len());
    for &span in &input.bodies {
        let body = runnel_plugin_sdk::span_bytes(&input.arena, span);
        let result = match line::parse(body) {
            Ok(parsed) => ParseResult::Ok(write(&mut out, &keys, &parsed)),
            Err(err) => ParseResult::Error(out.span(err.to_string().as_bytes())),
        };
        results.push(result);
    }
    ParseOutput {
        data: out.finish(),
        results,
    }
}

/// The member names, written once per batch.
struct Keys {
    host: Key,
    ident: Key,
    user: Key,
    method: Key,
    path: Key,
    protocol: Key,
    request: Key,
    status: Key,
    size: Key,
    referrer: Key,
    agent: Key,
}

impl Keys {
    fn new(out: &mut Output) -> Self {
        Self {
            host: out.key("host"),
            ident: out.key("ident"),
            user: out.key("user"),
            method: out.key("method"),
            path: out.key("path"),
            protocol: out.key("protocol"),
            request: out.key("request"),
            status: out.key("status"),
            size: out.key("size"),
            referrer: out.key("referrer"),
            agent: out.key("agent"),
        }
    }
}

fn write(out: &mut Output, k: &Keys, line: &AccessLine<'_>) -> Parsed {
    let mut obj = out.object();
    obj.str(k.host, line.host);
    opt_str(&mut obj, k.ident, line.ident);
    opt_str(&mut obj, k.user, line.user);
    match line.request {
        Request::Parts {
            method,
            path,
            protocol,
        } => {
            obj.str(k.method, method).str(k.path, path);
            opt_str(&mut obj, k.protocol, protocol);
        }
        Request::Raw(raw) => {
            obj.str(k.request, raw);
        }
    }
    obj.int(k.status, i64::from(line.status));
    match line.size {
        Some(size) => obj.int(k.size, size),
        None => obj.null(k.size),
    };
    if let Some(referrer) = line.referrer {
        opt_str(&mut obj, k.referrer, referrer);
    }
    if let Some(agent) = line.agent {
        opt_str(&mut obj, k.agent, agent);
    }
    let fields = obj.finish();
    Parsed {
        fields,
        level: Some(match line.status {
            500.. => Level::Error,
            400..=499 => Level::Warn,
            _ => Level::Info,
        }),
        timestamp: Some(line.timestamp_ns),
        name: None,
    }
}

fn opt_str(obj: &mut runnel_plugin_sdk::ObjectWriter<'_>, key: Key, value: Option<&str>) {
    match value {
        Some(v) => obj.str(key, v),
        None => obj.null(key),
    };
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    struct Combined;

    impl Guest for Plugin {
        type Instance = Combined;
    }

    impl GuestInstance for Combined {
        fn create(config: Tree) -> Result<Instance, String> {
            runnel_plugin_sdk::Config::from_tree(&config)?.deny_unknown(&[])?;
            Ok(Instance::new(Combined))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            super::parse_lines(&input)
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}
