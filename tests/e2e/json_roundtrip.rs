//! (e) JSON through the `json` parser comes out as the same JSON values; lines that are
//! not JSON, or not UTF-8, are kept, tagged and counted.

use crate::common::*;

const CORPUS: &[&str] = &[
    r#"{"null":null,"t":true,"f":false}"#,
    r#"{"int":1,"float":1.0,"neg":-0.5,"exp":1e3,"zero":0,"negzero":-0.0}"#,
    r#"{"big":9223372036854775807,"small":-9223372036854775808,"bigger":18446744073709551615,"js_unsafe":9007199254740993}"#,
    r#"{"huge":123456789012345678901234567890}"#,
    r#"{"empty_obj":{},"empty_arr":[],"nested":{"a":{"b":{"c":[1,[2,[3,[]]],{}]}}}}"#,
    r#"{"mixed":[1,"two",3.5,null,true,{"k":"v"},[],{}]}"#,
    r#"{"unicode":"caf\u00e9 \ud83d\ude00 \u4e2d","esc":"tab\tnl\nquote\"back\\slash\/","raw":"日本語"}"#,
    r#"{"dup":1,"dup":2}"#,
    r#"{}"#,
    r#"  {"spaces" : [ 1 , 2 ] }  "#,
    r#"{"deep":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}"#,
];

const NOT_JSON: &[&str] = &[r#"{"unterminated": "#, "plain text line", r#"[1,2,3]"#];

#[test]
fn json_values_survive_the_pipeline_and_bad_lines_are_kept_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let input = dir.path().join("in.jsonl");
    let mut bytes = Vec::new();
    for line in CORPUS {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    for line in NOT_JSON {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"bad_utf8\":\"\xff\xfe\"}\n");
    std::fs::write(&input, &bytes).unwrap();

    let config = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
summary_interval_secs = 3600

[plugins.json]
builtin = "json"

[sources.in]
type = "stdin"
plugins = ["json"]
channels = ["main"]
{tail}"#,
            tail = main_channel_to_file(&out, "json"),
        ),
    );
    let output = run_with_stdin(&config, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let events = json_lines(&out);
    assert_eq!(
        events.len(),
        CORPUS.len() + NOT_JSON.len() + 1,
        "every line kept"
    );
    for (event, line) in events.iter().zip(CORPUS) {
        let expected: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["fields"], expected, "line {line}");
        assert!(event["tags"].get("parse_error").is_none());
    }
    // Types exactly: 1.0 stays a float, big integers stay exact integers.
    let raw = std::fs::read_to_string(&out).unwrap();
    let second = raw.lines().nth(1).unwrap();
    assert!(second.contains(r#""int":1,"float":1.0"#), "{second}");
    let third = raw.lines().nth(2).unwrap();
    assert!(
        third.contains("18446744073709551615") && third.contains("9007199254740993"),
        "{third}"
    );
    assert!(
        raw.lines()
            .nth(4)
            .unwrap()
            .contains(r#""empty_obj":{},"empty_arr":[]"#)
    );

    for (event, line) in events[CORPUS.len()..].iter().zip(NOT_JSON) {
        assert_eq!(event["body"], *line, "kept as it was");
        let err = event["tags"]["parse_error"].as_str().unwrap();
        assert!(err.starts_with("json:"), "{err}");
        assert_eq!(event["tags"]["error_step"], "json");
    }
    let last = events.last().unwrap();
    assert!(
        last["tags"]["parse_error"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{last}"
    );
    assert_eq!(
        summary_counter(&stderr, "step.in.json", "events_failed"),
        Some(NOT_JSON.len() as u64 + 1),
        "{stderr}"
    );
}
