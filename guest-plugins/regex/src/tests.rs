use super::*;
use runnel_plugin_sdk::types::Level;
use runnel_plugin_sdk::{decode_value, span_str};

const ZK_PATTERN: &str = r"^(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2},\d{3}) - (?P<level>[A-Z]+)\s+\[(?P<node>[^:]*):(?P<component>[^@]*)@(?P<id>\d+)\] - (?P<content>.*)$";

const ZK_LINE: &str = "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200";

fn zk_dir() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/loghub/Zookeeper/"
    )
    .to_owned()
}

fn lines(bodies: &[&[u8]]) -> Lines {
    runnel_plugin_sdk::lines(bodies)
}

#[derive(Debug, PartialEq)]
struct Event {
    fields: Value,
    level: Option<Level>,
    name: Option<String>,
}

fn parse(parser: &RegexParser, bodies: &[&[u8]]) -> Vec<Result<Event, String>> {
    let out = parser.parse_lines(&lines(bodies));
    let data = &out.data;
    assert_eq!(out.results.len(), bodies.len());
    out.results
        .iter()
        .map(|result| match result {
            ParseResult::Ok(p) => {
                assert_eq!(p.timestamp, None);
                Ok(Event {
                    fields: decode_value(&data.arena, &data.nodes, p.fields).expect("a tree"),
                    level: p.level,
                    name: p.name.map(|s| span_str(&data.arena, s).into_owned()),
                })
            }
            ParseResult::Error(span) => Err(span_str(&data.arena, *span).into_owned()),
        })
        .collect()
}

fn parse_one(parser: &RegexParser, body: &str) -> Result<Event, String> {
    parse(parser, &[body.as_bytes()]).remove(0)
}

fn s(text: &str) -> Value {
    Value::str(text)
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::object(members)
}

fn config(members: Vec<(&str, Value)>) -> Config {
    Config::from_members(members)
}

fn parser(members: Vec<(&str, Value)>) -> RegexParser {
    RegexParser::new(&config(members)).expect("valid config")
}

fn create_error(members: Vec<(&str, Value)>) -> String {
    RegexParser::new(&config(members)).expect_err("an invalid config")
}

fn zk_parser() -> RegexParser {
    parser(vec![
        ("pattern", s(ZK_PATTERN)),
        ("types", obj(vec![("id", s("int"))])),
        ("level_capture", s("level")),
    ])
}

#[test]
fn zookeeper_line_becomes_fields() {
    let event = parse_one(&zk_parser(), ZK_LINE).unwrap();
    assert_eq!(
        event,
        Event {
            fields: obj(vec![
                ("date", s("2015-07-29")),
                ("time", s("17:41:44,747")),
                ("level", s("INFO")),
                ("node", s("QuorumPeer[myid=1]/0")),
                ("component", s("0:0:0:0:0:0:0:2181:FastLeaderElection")),
                ("id", Value::Int(774)),
                ("content", s("Notification time out: 3200")),
            ]),
            level: Some(Level::Info),
            name: None,
        }
    );
}

/// Splits one CSV record (quoted fields may hold commas and doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[test]
fn every_zookeeper_line_matches_the_loghub_structure() {
    let log = std::fs::read_to_string(zk_dir() + "Zookeeper_2k.log")
        .expect("the vendored test data (tests/data)");
    let csv = std::fs::read_to_string(zk_dir() + "Zookeeper_2k.log_structured.csv").expect("csv");
    let bodies: Vec<&[u8]> = log.lines().map(str::as_bytes).collect();
    let events = parse(&zk_parser(), &bodies);
    assert_eq!(events.len(), 2000);
    let mut levels = [0usize; 3];
    for (event, record) in events.iter().zip(csv.lines().skip(1)) {
        let event = event.as_ref().unwrap_or_else(|e| panic!("{e}: {record}"));
        let expected = csv_fields(record);
        let field = |name: &str| event.fields.get(name).cloned();
        assert_eq!(field("date"), Some(s(&expected[1])));
        assert_eq!(field("time"), Some(s(&expected[2])));
        assert_eq!(field("level"), Some(s(&expected[3])));
        assert_eq!(field("node"), Some(s(&expected[4])), "{record}");
        assert_eq!(field("component"), Some(s(&expected[5])), "{record}");
        assert_eq!(field("id"), Some(Value::Int(expected[6].parse().unwrap())));
        let content = field("content").unwrap();
        assert_eq!(
            content.as_str().map(str::trim_end),
            Some(expected[7].trim_end())
        );
        match event.level {
            Some(Level::Info) => levels[0] += 1,
            Some(Level::Warn) => levels[1] += 1,
            Some(Level::Error) => levels[2] += 1,
            other => panic!("unexpected level {other:?}"),
        }
    }
    assert_eq!(levels, [669, 1318, 13]);
}

#[test]
fn non_matching_lines_are_errors() {
    let results = parse(&zk_parser(), &[b"", b"hello", ZK_LINE.as_bytes()]);
    assert_eq!(
        results[0],
        Err("regex: line does not match `pattern`".to_owned())
    );
    assert_eq!(
        results[1],
        Err("regex: line does not match `pattern`".to_owned())
    );
    assert!(results[2].is_ok());
}

#[test]
fn conversion_failures_name_the_capture_and_text() {
    let p = parser(vec![
        ("pattern", s(r"^(?P<n>\S+) (?P<f>\S+) (?P<b>\S+)$")),
        (
            "types",
            obj(vec![("n", s("int")), ("f", s("float")), ("b", s("bool"))]),
        ),
    ]);
    assert_eq!(
        parse_one(&p, "12 1.5 TRUE").unwrap().fields,
        obj(vec![
            ("n", Value::Int(12)),
            ("f", Value::Float(1.5)),
            ("b", Value::Bool(true)),
        ])
    );
    assert_eq!(
        parse_one(&p, "-1 2 false").unwrap().fields,
        obj(vec![
            ("n", Value::Int(-1)),
            ("f", Value::Float(2.0)),
            ("b", Value::Bool(false)),
        ])
    );
    assert_eq!(
        parse_one(&p, "18446744073709551615 0 true")
            .unwrap()
            .fields
            .get("n"),
        Some(&Value::Uint(u64::MAX))
    );
    assert_eq!(
        parse_one(&p, "12a 1.5 true"),
        Err("regex: capture `n`: `12a` is not an int".to_owned())
    );
    assert_eq!(
        parse_one(&p, "1 x true"),
        Err("regex: capture `f`: `x` is not a float".to_owned())
    );
    assert_eq!(
        parse_one(&p, "1 1 maybe"),
        Err("regex: capture `b`: `maybe` is not a bool".to_owned())
    );
}

#[test]
fn failed_lines_write_no_nodes() {
    let p = parser(vec![
        ("pattern", s(r"^(?P<word>[a-z]+) (?P<n>\S+)$")),
        ("types", obj(vec![("n", s("int"))])),
    ]);
    let out = p.parse_lines(&lines(&[b"a 1", b"b x", b"c 3", b"nope"]));
    let ok: u32 = out
        .results
        .iter()
        .map(|r| match r {
            ParseResult::Ok(p) => p.fields.len,
            ParseResult::Error(_) => 0,
        })
        .sum();
    assert_eq!(ok as usize, out.data.nodes.len());
    assert_eq!(ok, 6);
}

#[test]
fn groups_that_did_not_take_part_are_null() {
    let p = parser(vec![(
        "pattern",
        s(r"^(?:(?P<num>\d+)|(?P<word>[a-z]+))(?: (?P<rest>.*))?(x)?$"),
    )]);
    assert_eq!(
        parse_one(&p, "42").unwrap().fields,
        obj(vec![
            ("num", s("42")),
            ("word", Value::Null),
            ("rest", Value::Null)
        ])
    );
    assert_eq!(
        parse_one(&p, "abc more text").unwrap().fields,
        obj(vec![
            ("num", Value::Null),
            ("word", s("abc")),
            ("rest", s("more text")),
        ])
    );
}

#[test]
fn level_and_name_captures() {
    let p = parser(vec![
        (
            "pattern",
            s(r"^(?<app>\w+)(?: \[(?<lvl>\w+)\])? (?<msg>.*)$"),
        ),
        ("level_capture", s("lvl")),
        ("name_capture", s("app")),
    ]);
    let events = parse(
        &p,
        &[
            b"billing [warning] low",
            b"auth [NOTICE] hi",
            b"web no level",
        ],
    );
    let summary: Vec<_> = events
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.name.unwrap(), e.level)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("billing".to_owned(), Some(Level::Warn)),
            ("auth".to_owned(), Some(Level::Unknown)),
            ("web".to_owned(), None),
        ]
    );
}

#[test]
fn invalid_utf8_is_replaced_and_line_ends_ignored() {
    let p = parser(vec![("pattern", s(r"^(?P<all>.*)$"))]);
    let events = parse(&p, &[b"caf\xe9 ok", b"crlf\r\n", b"\xff"]);
    let texts: Vec<_> = events
        .into_iter()
        .map(|e| e.unwrap().fields.get("all").cloned().unwrap())
        .collect();
    assert_eq!(texts, vec![s("caf\u{fffd} ok"), s("crlf"), s("\u{fffd}")]);
}

#[test]
fn unicode_classes_work() {
    let p = parser(vec![("pattern", s(r"^(?P<w>\w+)\s+(?P<d>\d+)$"))]);
    assert_eq!(
        parse_one(&p, "héllo\u{a0}42").unwrap().fields,
        obj(vec![("w", s("héllo")), ("d", s("42"))])
    );
}

#[test]
fn bad_config_names_the_key() {
    assert_eq!(create_error(vec![]), "regex: config: `pattern` is required");
    assert_eq!(
        create_error(vec![("pattern", Value::Int(3))]),
        "regex: config: `pattern` must be a string, got integer"
    );
    let err = create_error(vec![("pattern", s("(?P<a>"))]);
    assert!(
        err.starts_with("regex: config: `pattern` does not compile"),
        "{err}"
    );
    let err = create_error(vec![("pattern", s(r"(\d+) (.*)"))]);
    assert!(
        err.starts_with("regex: config: `pattern` has no named capture"),
        "{err}"
    );
    let err = create_error(vec![
        ("pattern", s("(?P<a>x)")),
        ("typo", Value::Bool(true)),
    ]);
    assert!(
        err.starts_with("regex: config: unknown key `typo`"),
        "{err}"
    );
    assert_eq!(
        create_error(vec![
            ("pattern", s("(?P<a>x)")),
            ("types", obj(vec![("b", s("int"))])),
        ]),
        "regex: config: `types` names `b`, which is not a named group of `pattern`"
    );
    assert_eq!(
        create_error(vec![
            ("pattern", s("(?P<a>x)")),
            ("types", obj(vec![("a", s("number"))])),
        ]),
        "regex: config: `types.a` must be one of \"string\", \"int\", \"float\", \"bool\""
    );
    assert_eq!(
        create_error(vec![("pattern", s("(?P<a>x)")), ("types", s("int"))]),
        "regex: config: `types` must be a table, got string"
    );
    assert_eq!(
        create_error(vec![
            ("pattern", s("(?P<a>x)")),
            ("level_capture", s("lvl"))
        ]),
        "regex: config: `level_capture` names `lvl`, which is not a named group of `pattern`"
    );
    assert_eq!(
        create_error(vec![("pattern", s("(?P<a>x)")), ("name_capture", s("n"))]),
        "regex: config: `name_capture` names `n`, which is not a named group of `pattern`"
    );
}
