use super::*;
use runnel_plugin_sdk::parser::ParseOutput;
use runnel_plugin_sdk::{Value, decode_value, span_str};

fn lines(bodies: &[&[u8]]) -> Lines {
    runnel_plugin_sdk::lines(bodies)
}

/// What one body parsed into, decoded back from the output.
#[derive(Debug, PartialEq)]
struct Event {
    fields: Value,
    level: Option<Level>,
    timestamp: Option<i64>,
    name: Option<String>,
}

fn decode(out: &ParseOutput) -> Vec<Result<Event, String>> {
    let data = &out.data;
    out.results
        .iter()
        .map(|result| match result {
            ParseResult::Ok(p) => Ok(Event {
                fields: decode_value(&data.arena, &data.nodes, p.fields).expect("a valid tree"),
                level: p.level,
                timestamp: p.timestamp,
                name: p.name.map(|s| span_str(&data.arena, s).into_owned()),
            }),
            ParseResult::Error(span) => Err(span_str(&data.arena, *span).into_owned()),
        })
        .collect()
}

fn parse_with(json: &Json, bodies: &[&[u8]]) -> Vec<Result<Event, String>> {
    decode(&json.parse_lines(&lines(bodies)))
}

fn parse_one(body: &str) -> Result<Value, String> {
    parse_with(&Json::default(), &[body.as_bytes()])
        .remove(0)
        .map(|e| e.fields)
}

fn error(body: &[u8]) -> String {
    parse_with(&Json::default(), &[body]).remove(0).unwrap_err()
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::object(members)
}

fn s(text: &str) -> Value {
    Value::str(text)
}

fn config(members: Vec<(&str, Value)>) -> Config {
    Config::from_members(members)
}

fn configured(members: Vec<(&str, Value)>) -> Json {
    Json::new(&config(members)).expect("valid config")
}

#[test]
fn scalars_keep_their_types() {
    let fields = parse_one(
        r#"{"n":null,"t":true,"f":false,"i":42,"neg":-7,"zero":0,
            "max":9223372036854775807,"min":-9223372036854775808,
            "above":9223372036854775808,"umax":18446744073709551615,
            "huge":18446744073709551616,"one":1.0,"e":1e3,"E":2E-2,"frac":0.5}"#,
    )
    .unwrap();
    assert_eq!(
        fields,
        obj(vec![
            ("n", Value::Null),
            ("t", Value::Bool(true)),
            ("f", Value::Bool(false)),
            ("i", Value::Int(42)),
            ("neg", Value::Int(-7)),
            ("zero", Value::Int(0)),
            ("max", Value::Int(i64::MAX)),
            ("min", Value::Int(i64::MIN)),
            ("above", Value::Uint(1 << 63)),
            ("umax", Value::Uint(u64::MAX)),
            ("huge", Value::Float(18446744073709551616.0)),
            ("one", Value::Float(1.0)),
            ("e", Value::Float(1000.0)),
            ("E", Value::Float(0.02)),
            ("frac", Value::Float(0.5)),
        ])
    );
}

#[test]
fn uint_node_is_written_only_above_i64() {
    let out = Json::default().parse_lines(&lines(&[br#"{"a":9223372036854775808,"b":5}"#]));
    assert!(matches!(
        out.data.nodes.value(1).unwrap(),
        Wire::Uint(9_223_372_036_854_775_808)
    ));
    assert!(matches!(out.data.nodes.value(2).unwrap(), Wire::Int(5)));
}

#[test]
fn floats_round_trip_exactly() {
    let fields =
        parse_one(r#"{"a":0.1,"b":2.2250738585072014e-308,"c":1.7976931348623157e308,"d":-0}"#)
            .unwrap();
    let Value::Object(members) = fields else {
        panic!("not an object")
    };
    assert_eq!(members[0].1, Value::Float(0.1));
    assert_eq!(members[1].1, Value::Float(f64::MIN_POSITIVE));
    assert_eq!(members[2].1, Value::Float(f64::MAX));
    match members[3].1 {
        Value::Float(f) => assert!(f == 0.0 && f.is_sign_negative()),
        ref other => panic!("-0 became {other:?}"),
    }
}

#[test]
fn strings_decode_every_escape() {
    let fields =
        parse_one(r#"{"s":"q\"b\\s\/\b\f\n\r\t\u00e9\ud83d\ude00 ü","k\u0041":"","e\u0000":"x"}"#)
            .unwrap();
    assert_eq!(
        fields,
        obj(vec![
            ("s", s("q\"b\\s/\u{8}\u{c}\n\r\té😀 ü")),
            ("kA", s("")),
            ("e\0", s("x")),
        ])
    );
}

#[test]
fn containers_nest_and_keep_order() {
    let fields = parse_one(
        r#" { "z":[], "y":{}, "x":[1,[2,[]],{"a":{"b":[null]}}], "w":{"k2":1,"k1":2} } "#,
    )
    .unwrap();
    assert_eq!(
        fields,
        obj(vec![
            ("z", Value::Array(vec![])),
            ("y", obj(vec![])),
            (
                "x",
                Value::Array(vec![
                    Value::Int(1),
                    Value::Array(vec![Value::Int(2), Value::Array(vec![])]),
                    obj(vec![(
                        "a",
                        obj(vec![("b", Value::Array(vec![Value::Null]))])
                    )]),
                ])
            ),
            ("w", obj(vec![("k2", Value::Int(1)), ("k1", Value::Int(2))])),
        ])
    );
    assert_eq!(parse_one("{}").unwrap(), obj(vec![]));
}

#[test]
fn duplicate_names_are_passed_on_in_order() {
    assert_eq!(
        parse_one(r#"{"a":1,"b":2,"a":3}"#).unwrap(),
        obj(vec![
            ("a", Value::Int(1)),
            ("b", Value::Int(2)),
            ("a", Value::Int(3))
        ])
    );
}

#[test]
fn invalid_utf8_names_the_byte() {
    assert_eq!(
        error(b"{\"a\":\"\xff\"}"),
        "json: body is not valid UTF-8 at byte 6"
    );
    assert_eq!(error(b"\xc3"), "json: body is not valid UTF-8 at byte 0");
}

#[test]
fn malformed_json_reports_serde_message_and_column() {
    assert_eq!(
        error(br#"{"a":1 "b":2}"#),
        "json: expected `,` or `}` at line 1 column 8"
    );
    assert_eq!(
        error(b""),
        "json: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        error(br#"{"a":"#),
        "json: EOF while parsing a value at line 1 column 5"
    );
    assert!(error(b"{'a':1}").starts_with("json: key must be a string at line 1 column 2"));
    assert!(error(b"not json").starts_with("json: expected ident at line 1 column 2"));
    assert!(error(b"[1,").starts_with("json: EOF while parsing a value at line 1 column 3"));
    assert_eq!(
        error(br#"{"a":"\ud800"}"#),
        "json: unexpected end of hex escape at line 1 column 13"
    );
    assert!(error(b"{\"a\":\"x\ty\"}").starts_with("json: control character"));
    assert!(error(br#"{"a":1e999}"#).starts_with("json: number out of range"));
}

#[test]
fn other_json_types_are_named() {
    assert_eq!(error(b"[1,2]"), "json: expected an object, got array");
    assert_eq!(error(br#" "x" "#), "json: expected an object, got string");
    assert_eq!(error(b"true"), "json: expected an object, got boolean");
    assert_eq!(error(b"null"), "json: expected an object, got null");
    assert_eq!(error(b"-1.5"), "json: expected an object, got number");
}

#[test]
fn trailing_garbage_is_an_error() {
    assert_eq!(
        error(br#"{"a":1} x"#),
        "json: trailing characters at line 1 column 9"
    );
    assert!(error(br#"{"a":1}{"b":2}"#).starts_with("json: trailing characters"));
    assert!(parse_one("{\"a\":1}\r\n  ").is_ok());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(error(deep.as_bytes()).starts_with("json: recursion limit exceeded"));
}

#[test]
fn failed_lines_leave_no_nodes_behind() {
    let out = Json::default().parse_lines(&lines(&[
        br#"{"a":[1,2,3],"b":{"c":"#,
        br#"{"ok":true}"#,
        b"[1]",
        br#"{"x":{"y":1}} trailing"#,
        br#"{"n":2}"#,
    ]));
    assert_eq!(out.results.len(), 5);
    let ok: Vec<_> = out
        .results
        .iter()
        .filter_map(|r| match r {
            ParseResult::Ok(p) => Some(p.fields),
            ParseResult::Error(_) => None,
        })
        .collect();
    assert_eq!(ok.len(), 2);
    assert_eq!(
        ok.iter().map(|r| r.len).sum::<u32>() as usize,
        out.data.nodes.len()
    );
    let decoded = decode(&out);
    assert!(decoded[0].is_err() && decoded[2].is_err() && decoded[3].is_err());
    assert_eq!(
        decoded[1].as_ref().unwrap().fields,
        obj(vec![("ok", Value::Bool(true))])
    );
    assert_eq!(
        decoded[4].as_ref().unwrap().fields,
        obj(vec![("n", Value::Int(2))])
    );
}

#[test]
fn level_key_sets_the_level() {
    let json = configured(vec![("level_key", s("lvl"))]);
    let results = parse_with(
        &json,
        &[
            br#"{"lvl":"WARNING","msg":"x"}"#,
            br#"{"lvl":"err"}"#,
            br#"{"lvl":"crit"}"#,
            br#"{"lvl":"notice"}"#,
            br#"{"lvl":30}"#,
            br#"{"msg":"no level"}"#,
            br#"{"nested":{"lvl":"error"}}"#,
            br#"{"lvl":"debug","lvl":"info"}"#,
        ],
    );
    let levels: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().level).collect();
    assert_eq!(
        levels,
        vec![
            Some(Level::Warn),
            Some(Level::Error),
            Some(Level::Fatal),
            Some(Level::Unknown),
            None,
            None,
            None,
            Some(Level::Info),
        ]
    );
    // The member stays in the fields.
    assert_eq!(
        results[0].as_ref().unwrap().fields,
        obj(vec![("lvl", s("WARNING")), ("msg", s("x"))])
    );
}

#[test]
fn name_key_sets_the_name() {
    let json = configured(vec![("name_key", s("app"))]);
    let results = parse_with(
        &json,
        &[br#"{"app":"billing","x":1}"#, br#"{"app":7}"#, b"{}"],
    );
    assert_eq!(
        results[0].as_ref().unwrap().name.as_deref(),
        Some("billing")
    );
    assert_eq!(results[1].as_ref().unwrap().name, None);
    assert_eq!(results[2].as_ref().unwrap().name, None);
}

#[test]
fn timestamp_key_reads_rfc3339_and_epoch_seconds() {
    let json = configured(vec![("timestamp_key", s("ts"))]);
    let base = 1_714_557_600_000_000_000;
    let results = parse_with(
        &json,
        &[
            br#"{"ts":"2024-05-01T10:00:00.123Z"}"#,
            br#"{"ts":"2024-05-01T12:00:00+02:00"}"#,
            br#"{"ts":1714557600}"#,
            br#"{"ts":1714557600.5}"#,
            br#"{"ts":"yesterday"}"#,
            br#"{"ts":true}"#,
            br#"{"ts":18446744073709551615}"#,
            br#"{"ts":1e300}"#,
        ],
    );
    let stamps: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().expect("never an error").timestamp)
        .collect();
    assert_eq!(
        stamps,
        vec![
            Some(base + 123_000_000),
            Some(base),
            Some(base),
            Some(base + 500_000_000),
            None,
            None,
            None,
            None,
        ]
    );
}

#[test]
fn one_member_can_serve_several_keys() {
    let json = configured(vec![
        ("level_key", s("v")),
        ("name_key", s("v")),
        ("timestamp_key", s("t")),
    ]);
    let event = parse_with(&json, &[br#"{"v":"info","t":0}"#])
        .remove(0)
        .unwrap();
    assert_eq!(
        event,
        Event {
            fields: obj(vec![("v", s("info")), ("t", Value::Int(0))]),
            level: Some(Level::Info),
            timestamp: Some(0),
            name: Some("info".into()),
        }
    );
}

#[test]
fn bad_config_names_the_key() {
    let err = Json::new(&config(vec![("level", s("x"))])).unwrap_err();
    assert!(
        err.starts_with("json: config: unknown key `level`"),
        "{err}"
    );
    let err = Json::new(&config(vec![("name_key", Value::Int(1))])).unwrap_err();
    assert_eq!(
        err,
        "json: config: `name_key` must be a string, got integer"
    );
    let err = Json::new(&config(vec![("timestamp_key", Value::Bool(true))])).unwrap_err();
    assert!(err.contains("`timestamp_key`"), "{err}");
    assert!(Json::new(&Config::empty()).is_ok());
}

#[test]
fn a_batch_gives_one_result_per_body() {
    let bodies: Vec<String> = (0..500)
        .map(|i| {
            if i % 7 == 0 {
                format!("{{\"i\":{i}")
            } else {
                format!(r#"{{"i":{i},"s":"line {i}","a":[{i},{i}.5]}}"#)
            }
        })
        .collect();
    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
    let results = parse_with(&Json::default(), &refs);
    assert_eq!(results.len(), 500);
    for (i, result) in results.iter().enumerate() {
        if i % 7 == 0 {
            assert!(result.is_err());
        } else {
            let i = i as i64;
            assert_eq!(
                result.as_ref().unwrap().fields,
                obj(vec![
                    ("i", Value::Int(i)),
                    ("s", s(&format!("line {i}"))),
                    (
                        "a",
                        Value::Array(vec![Value::Int(i), Value::Float(i as f64 + 0.5)])
                    ),
                ])
            );
        }
    }
}
