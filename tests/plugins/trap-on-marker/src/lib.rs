//! `trap-on-marker`: a test fixture parser that misbehaves on demand, to test how the
//! host survives a plugin that traps or never returns.
//!
//! For each body, in order: a body containing `TRAP` makes the plugin panic (a trap in
//! WebAssembly); a body containing `SPIN` makes it loop forever; a body containing
//! `SLEEP` makes it sleep for an hour (a blocking WASI call, which the host must not
//! honour); a body containing `PROBE` reports what the sandbox lets it see (fields
//! `file`, `dir`, `env`, `args`, `clock_secs`: what reading a file, listing `/`, the
//! environment, the arguments and the wall clock gave); a body containing `GROW` keeps
//! 4 MiB of memory allocated for good (memory that only a new instance gives back), then
//! parses as usual; a body containing `BOMB` allocates until memory runs out; a body
//! containing `AMPLIFY` parses to a `line` field holding the body 1000 times; a body
//! containing `SLOW` busies the CPU for a while (about 50 million loop turns) before
//! parsing; any other
//! body parses to the field `line` holding the body as text (invalid UTF-8 replaced).
//!
//! Config: `count` (bool, default false): every parsed body also gets the field `seen`,
//! how many bodies with its first word the plugin has parsed so far — counted in the
//! host-held state (`runnel:plugin/state`), so the count outlives traps, reloads and
//! restarts.

use runnel_plugin_sdk::Output;
use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::Lines;

/// What the fixture does with one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Trap,
    Spin,
    Sleep,
    Probe,
    Grow,
    Bomb,
    Amplify,
    Slow,
    Parse,
}

/// The behaviour a body asks for.
pub fn behaviour(body: &[u8]) -> Behaviour {
    let has = |marker: &[u8]| body.windows(marker.len()).any(|w| w == marker);
    if has(b"TRAP") {
        Behaviour::Trap
    } else if has(b"SPIN") {
        Behaviour::Spin
    } else if has(b"SLEEP") {
        Behaviour::Sleep
    } else if has(b"PROBE") {
        Behaviour::Probe
    } else if has(b"GROW") {
        Behaviour::Grow
    } else if has(b"BOMB") {
        Behaviour::Bomb
    } else if has(b"AMPLIFY") {
        Behaviour::Amplify
    } else if has(b"SLOW") {
        Behaviour::Slow
    } else {
        Behaviour::Parse
    }
}

/// Parses every body of `input`; traps or spins as the bodies ask.
/// Counts one more body with `key` in the host-held state; returns the new count.
pub type Counter<'a> = &'a dyn Fn(&[u8]) -> i64;

pub fn parse_lines(input: &Lines) -> ParseOutput {
    parse_counting(input, None)
}

/// Like [`parse_lines`]; with `count`, parsed bodies get `seen` from it.
pub fn parse_counting(input: &Lines, count: Option<Counter>) -> ParseOutput {
    let mut out = Output::with_capacity(input.bodies.len(), 64, 2);
    let results = input
        .bodies
        .iter()
        .map(|&span| {
            let body = runnel_plugin_sdk::span_bytes(&input.arena, span);
            match behaviour(body) {
                Behaviour::Trap => panic!("trap-on-marker: TRAP in body"),
                Behaviour::Spin => spin(),
                Behaviour::Sleep => {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    ParseResult::Ok(line(&mut out, body))
                }
                Behaviour::Probe => ParseResult::Ok(probe(&mut out)),
                Behaviour::Grow => {
                    // Touched, so the pages are really used; leaked, so they stay.
                    let kept: &'static mut [u8] = Vec::leak(vec![1u8; 4 << 20]);
                    std::hint::black_box(&kept);
                    ParseResult::Ok(line(&mut out, body))
                }
                Behaviour::Amplify => ParseResult::Ok(line(&mut out, &body.repeat(1000))),
                Behaviour::Slow => {
                    let mut turns = 0u64;
                    for _ in 0..50_000_000u64 {
                        turns = std::hint::black_box(turns.wrapping_add(1));
                    }
                    ParseResult::Ok(line(&mut out, body))
                }
                Behaviour::Bomb => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                Behaviour::Parse => match count {
                    Some(count) => {
                        let key = body.split(|&b| b == b' ').next().unwrap_or_default();
                        let seen = count(key);
                        let mut obj = out.object();
                        obj.str("line", &String::from_utf8_lossy(body))
                            .int("seen", seen);
                        ParseResult::Ok(Parsed {
                            fields: obj.finish(),
                            level: None,
                            timestamp: None,
                            name: None,
                        })
                    }
                    None => ParseResult::Ok(line(&mut out, body)),
                },
            }
        })
        .collect();
    ParseOutput {
        data: out.finish(),
        results,
    }
}

fn line(out: &mut Output, body: &[u8]) -> Parsed {
    let mut obj = out.object();
    obj.str("line", &String::from_utf8_lossy(body));
    Parsed {
        fields: obj.finish(),
        level: None,
        timestamp: None,
        name: None,
    }
}

/// What the sandbox grants: each field says what an attempt gave.
fn probe(out: &mut Output) -> Parsed {
    let outcome = |r: std::io::Result<String>| match r {
        Ok(text) => format!("granted: {}", text.len()),
        Err(e) => format!("denied: {e}"),
    };
    let file = outcome(std::fs::read_to_string("/etc/hostname"));
    let dir = outcome(std::fs::read_dir("/").map(|d| d.count().to_string()));
    let env = std::env::vars().count() as i64;
    let args = std::env::args().count() as i64;
    let clock_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(-1);
    let mut obj = out.object();
    obj.str("file", &file)
        .str("dir", &dir)
        .int("env", env)
        .int("args", args)
        .int("clock_secs", clock_secs);
    Parsed {
        fields: obj.finish(),
        level: None,
        timestamp: None,
        name: None,
    }
}

/// Loops forever; `black_box` keeps the loop from being optimised away.
fn spin() -> ! {
    let mut turns = 0u64;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
        std::hint::spin_loop();
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    struct TrapOnMarker {
        count: bool,
    }

    impl Guest for Plugin {
        type Instance = TrapOnMarker;
    }

    impl GuestInstance for TrapOnMarker {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            config.deny_unknown(&["count"])?;
            let count = config.bool("count")?.unwrap_or(false);
            Ok(Instance::new(TrapOnMarker { count }))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            if !self.count {
                return super::parse_lines(&input);
            }
            let count = |key: &[u8]| {
                use runnel_plugin_sdk::state;
                let seen = state::get(key)
                    .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok())
                    .unwrap_or(0)
                    + 1;
                state::set(key, seen.to_string().as_bytes()).expect("a small state");
                seen
            };
            super::parse_counting(&input, Some(&count))
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{Value, decode_value};

    fn lines(bodies: &[&[u8]]) -> Lines {
        runnel_plugin_sdk::lines(bodies)
    }

    #[test]
    fn markers_choose_the_behaviour() {
        assert_eq!(behaviour(b"a TRAP here"), Behaviour::Trap);
        assert_eq!(behaviour(b"SPIN"), Behaviour::Spin);
        assert_eq!(behaviour(b"SLEEP"), Behaviour::Sleep);
        assert_eq!(behaviour(b"PROBE"), Behaviour::Probe);
        assert_eq!(behaviour(b"GROW"), Behaviour::Grow);
        assert_eq!(behaviour(b"BOMB"), Behaviour::Bomb);
        assert_eq!(behaviour(b"AMPLIFY"), Behaviour::Amplify);
        assert_eq!(behaviour(b"SLOW"), Behaviour::Slow);
        assert_eq!(behaviour(b"SPIN then TRAP"), Behaviour::Trap);
        assert_eq!(behaviour(b"trap spin TRA P"), Behaviour::Parse);
        assert_eq!(behaviour(b""), Behaviour::Parse);
    }

    #[test]
    fn other_bodies_become_the_line_field() {
        let out = parse_lines(&lines(&[b"hello", b"caf\xe9"]));
        let fields: Vec<Value> = out
            .results
            .iter()
            .map(|r| match r {
                ParseResult::Ok(p) => {
                    decode_value(&out.data.arena, &out.data.nodes, p.fields).unwrap()
                }
                ParseResult::Error(_) => panic!("never an error"),
            })
            .collect();
        assert_eq!(
            fields,
            vec![
                Value::Object(vec![("line".into(), Value::Str("hello".into()))]),
                Value::Object(vec![("line".into(), Value::Str("caf\u{fffd}".into()))]),
            ]
        );
    }

    #[test]
    #[should_panic(expected = "trap-on-marker: TRAP in body")]
    fn trap_marker_panics() {
        parse_lines(&lines(&[b"fine", b"please TRAP"]));
    }
}
