//! `versioned`: a test fixture parser for hot reload. Every body parses to the fields
//! `line` (the body as text) and `version`, the number written in the plugin's own
//! binary after the marker `RUNNEL-FIXTURE-VERSION:` (five ASCII digits). Tests make new
//! versions of the plugin by patching those digits in the `.wasm` file: every patched
//! file is a different component that reports its own number. Version `99999` traps on
//! every batch; version `99998` traps in `create`.
//!
//! Config: none.

use runnel_plugin_sdk::Output;
use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::Lines;

/// The marker and the digits the tests patch. Read through `black_box`, so the digits
/// are read from the binary's data at run time, not folded in at compile time.
#[used]
static VERSION: [u8; 28] = *b"RUNNEL-FIXTURE-VERSION:00001";

/// The traps-on-every-batch version.
pub const TRAPPING: u32 = 99_999;

/// The version that traps in `create`.
pub const TRAPPING_IN_CREATE: u32 = 99_998;

/// The version written in the binary (0 if the digits are not digits).
pub fn version() -> u32 {
    let bytes = std::hint::black_box(&VERSION);
    bytes[23..]
        .iter()
        .try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
        .unwrap_or(0)
}

pub fn parse_lines(input: &Lines) -> ParseOutput {
    let version = version();
    if version == TRAPPING {
        panic!("versioned: version {TRAPPING} traps on every batch");
    }
    let mut out = Output::with_capacity(input.bodies.len(), 64, 2);
    let results = input
        .bodies
        .iter()
        .map(|&span| {
            let body = runnel_plugin_sdk::span_bytes(&input.arena, span);
            let mut obj = out.object();
            obj.str("line", &String::from_utf8_lossy(body))
                .int("version", i64::from(version));
            ParseResult::Ok(Parsed {
                fields: obj.finish(),
                level: None,
                timestamp: None,
                name: None,
            })
        })
        .collect();
    ParseOutput {
        data: out.finish(),
        results,
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    struct Versioned;

    impl Guest for Plugin {
        type Instance = Versioned;
    }

    impl GuestInstance for Versioned {
        fn create(config: Tree) -> Result<Instance, String> {
            if super::version() == super::TRAPPING_IN_CREATE {
                panic!(
                    "versioned: version {} traps in create",
                    super::TRAPPING_IN_CREATE
                );
            }
            runnel_plugin_sdk::Config::from_tree(&config)?.deny_unknown(&[])?;
            Ok(Instance::new(Versioned))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            super::parse_lines(&input)
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_read_from_the_marker() {
        assert_eq!(super::version(), 1);
    }
}
