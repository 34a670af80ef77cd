use super::*;
use runnel_plugin_sdk::{BatchBuilder, decode_value, span_bytes};

fn s(text: &str) -> Value {
    Value::str(text)
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::object(members)
}

fn config(members: Vec<(&str, Value)>) -> Config {
    Config::from_members(members)
}

fn cleaner(members: Vec<(&str, Value)>) -> StripControl {
    StripControl::new(&config(members)).expect("valid config")
}

/// A patch decoded back: the merged members and the new body.
#[derive(Debug, PartialEq)]
struct Change {
    fields: Option<Value>,
    body: Option<Vec<u8>>,
}

fn changes(cleaned: &Cleaned) -> Vec<Option<Change>> {
    let data = &cleaned.output.data;
    cleaned
        .output
        .patches
        .iter()
        .map(|patch| {
            let patch = patch.as_ref()?;
            assert!(patch.level.is_none() && patch.timestamp.is_none() && patch.name.is_none());
            assert_eq!(patch.tags.len, 0);
            Some(Change {
                fields: patch.fields.as_ref().map(|update| match update {
                    FieldsUpdate::Merge(range) => {
                        decode_value(&data.arena, &data.nodes, *range).expect("a tree")
                    }
                    FieldsUpdate::Replace(_) => panic!("cleaners merge"),
                }),
                body: patch
                    .body
                    .map(|span| span_bytes(&data.arena, span).to_vec()),
            })
        })
        .collect()
}

fn one_event(body: &[u8], fields: &Value) -> Batch {
    let mut b = BatchBuilder::new();
    b.event(body, fields);
    b.finish()
}

#[test]
fn clean_events_get_no_patch_and_no_copy() {
    let mut b = BatchBuilder::new();
    b.event(
        "plain line\twith tab",
        &obj(vec![("msg", s("ok")), ("n", Value::Int(1))]),
    );
    b.event("ünïcödé 😀", &Value::Null);
    b.event("", &obj(vec![]));
    let cleaned = cleaner(vec![]).clean(&b.finish());
    assert_eq!(changes(&cleaned), vec![None, None, None]);
    assert_eq!(cleaned.removed, 0);
    assert!(cleaned.output.data.arena.is_empty());
    assert!(cleaned.output.data.nodes.is_empty());
}

#[test]
fn body_is_cleaned() {
    let cleaned = cleaner(vec![]).clean(&one_event(
        b"\x1b[32mINFO\x1b[0m started\r",
        &obj(vec![("msg", s("fine"))]),
    ));
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: None,
            body: Some(b"INFO started".to_vec()),
        })]
    );
    assert_eq!(cleaned.removed, 10);
}

#[test]
fn only_changed_top_level_members_are_merged() {
    let fields = obj(vec![
        ("clean", s("ok")),
        ("msg", s("a\u{200b}b")),
        (
            "nested",
            obj(vec![
                ("list", Value::Array(vec![s("x\0"), Value::Int(3), s("y")])),
                ("inner", obj(vec![("deep", s("\u{feff}bom"))])),
                ("keep", s("same")),
            ]),
        ),
        ("key\u{7}bell", s("clean value")),
        ("raw", Value::Bytes(b"\x00\x01".to_vec())),
        ("num", Value::Float(1.5)),
    ]);
    let cleaned = cleaner(vec![]).clean(&one_event(b"body", &fields));
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: Some(obj(vec![
                ("msg", s("ab")),
                (
                    "nested",
                    obj(vec![
                        ("list", Value::Array(vec![s("x"), Value::Int(3), s("y")])),
                        ("inner", obj(vec![("deep", s("bom"))])),
                        ("keep", s("same")),
                    ]),
                ),
            ])),
            body: None,
        })]
    );
    assert_eq!(cleaned.removed, 3);
}

#[test]
fn fields_list_limits_the_cleaning() {
    let fields = obj(vec![("a", s("a\n")), ("b", s("b\n")), ("c", s("c\n"))]);
    let c = cleaner(vec![
        ("fields", Value::Array(vec![s("b"), s("missing")])),
        ("body", Value::Bool(false)),
    ]);
    let cleaned = c.clean(&one_event(b"body\n", &fields));
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: Some(obj(vec![("b", s("b"))])),
            body: None,
        })]
    );
    let none = cleaner(vec![("fields", Value::Array(vec![]))]);
    assert_eq!(changes(&none.clean(&one_event(b"x", &fields))), vec![None]);
}

#[test]
fn tabs_are_kept_unless_told() {
    let batch = one_event(b"a\tb", &obj(vec![("m", s("c\td"))]));
    assert_eq!(changes(&cleaner(vec![]).clean(&batch)), vec![None]);
    let cleaned = cleaner(vec![("keep_tabs", Value::Bool(false))]).clean(&batch);
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: Some(obj(vec![("m", s("cd"))])),
            body: Some(b"ab".to_vec()),
        })]
    );
    assert_eq!(cleaned.removed, 2);
}

#[test]
fn body_that_is_not_utf8_loses_ascii_controls_only() {
    let cleaned = cleaner(vec![]).clean(&one_event(b"\xff\x1b[1m\xc2\x85bin\0", &Value::Null));
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: None,
            body: Some(b"\xff[1m\xc2\x85bin".to_vec()),
        })]
    );
    assert_eq!(cleaned.removed, 2);
}

#[test]
fn replacement_takes_the_place_of_removed_text() {
    let c = cleaner(vec![("replacement", s(" "))]);
    let cleaned = c.clean(&one_event(
        b"a\r\nb\x1b[0mc",
        &obj(vec![("m", s("x\u{202e}y"))]),
    ));
    assert_eq!(
        changes(&cleaned),
        vec![Some(Change {
            fields: Some(obj(vec![("m", s("x y"))])),
            body: Some(b"a  b c".to_vec()),
        })]
    );
    assert_eq!(cleaned.removed, 7);
}

#[test]
fn a_batch_mixes_patched_and_untouched_events() {
    let mut b = BatchBuilder::new();
    for i in 0..100 {
        let body = if i % 3 == 0 {
            format!("line {i}\u{7}")
        } else {
            format!("line {i}")
        };
        b.event(body, &obj(vec![("i", Value::Int(i))]));
    }
    let cleaned = cleaner(vec![]).clean(&b.finish());
    let changes = changes(&cleaned);
    assert_eq!(changes.len(), 100);
    for (i, change) in changes.iter().enumerate() {
        match change {
            Some(c) => {
                assert_eq!(i % 3, 0);
                assert_eq!(c.body.as_deref(), Some(format!("line {i}").as_bytes()));
            }
            None => assert_ne!(i % 3, 0),
        }
    }
    assert_eq!(cleaned.removed, 34);
}

#[test]
fn bad_config_names_the_key() {
    let err = StripControl::new(&config(vec![("keep_tab", Value::Bool(true))])).unwrap_err();
    assert!(
        err.starts_with("strip-control: config: unknown key `keep_tab`"),
        "{err}"
    );
    assert_eq!(
        StripControl::new(&config(vec![("body", s("yes"))])).unwrap_err(),
        "strip-control: config: `body` must be a boolean, got string"
    );
    assert_eq!(
        StripControl::new(&config(vec![("fields", s("msg"))])).unwrap_err(),
        "strip-control: config: `fields` must be a list of strings, got string"
    );
    assert_eq!(
        StripControl::new(&config(vec![("replacement", s("\x1b"))])).unwrap_err(),
        "strip-control: config: `replacement` holds a character that strip-control removes"
    );
    assert_eq!(
        StripControl::new(&config(vec![("keep_tabs", Value::Int(1))])).unwrap_err(),
        "strip-control: config: `keep_tabs` must be a boolean, got integer"
    );
}
