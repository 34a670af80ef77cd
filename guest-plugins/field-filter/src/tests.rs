use super::*;
use runnel_plugin_sdk::{BatchBuilder, Value};

fn s(text: &str) -> Value {
    Value::str(text)
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::object(members)
}

fn config(members: Vec<(&str, Value)>) -> Config {
    Config::from_members(members)
}

fn filter(members: Vec<(&str, Value)>) -> FieldFilter {
    FieldFilter::new(&config(members)).expect("valid config")
}

fn batch(fields: &[Value]) -> Batch {
    let mut b = BatchBuilder::new();
    for f in fields {
        b.event("body", f);
    }
    b.finish()
}

/// `true` for keep, `false` for drop.
fn kept(filter: &FieldFilter, fields: &[Value]) -> Vec<bool> {
    let out = filter.intercept(&batch(fields));
    assert!(out.data.arena.is_empty() && out.data.nodes.is_empty() && out.data.tags.is_empty());
    out.actions
        .iter()
        .map(|a| match a {
            Action::Keep => true,
            Action::Drop => false,
            Action::Patch(_) => panic!("field-filter never patches"),
        })
        .collect()
}

fn status_events() -> Vec<Value> {
    vec![
        obj(vec![("status", Value::Int(200))]),
        obj(vec![("status", Value::Int(503)), ("path", s("/x"))]),
        obj(vec![("path", s("/y")), ("status", Value::Float(500.0))]),
        obj(vec![("status", s("500"))]),
        obj(vec![("path", s("/z"))]),
        obj(vec![("status", Value::Null)]),
        Value::Null,
        obj(vec![("status", Value::Uint(u64::MAX))]),
    ]
}

#[test]
fn keep_matching_numbers() {
    let f = filter(vec![
        ("field", s("status")),
        ("op", s("ge")),
        ("value", Value::Int(500)),
    ]);
    assert_eq!(
        kept(&f, &status_events()),
        vec![false, true, true, false, false, false, false, true]
    );
}

#[test]
fn drop_matching_events() {
    let f = filter(vec![
        ("field", s("status")),
        ("op", s("ge")),
        ("value", Value::Float(499.5)),
        ("action", s("drop")),
    ]);
    assert_eq!(
        kept(&f, &status_events()),
        vec![true, false, false, true, true, true, true, false]
    );
}

#[test]
fn ne_matches_present_fields_only() {
    let f = filter(vec![
        ("field", s("status")),
        ("op", s("ne")),
        ("value", Value::Int(200)),
    ]);
    assert_eq!(
        kept(&f, &status_events()),
        vec![false, true, true, true, false, true, false, true]
    );
}

#[test]
fn exists_and_missing() {
    let exists = filter(vec![("field", s("status")), ("op", s("exists"))]);
    assert_eq!(
        kept(&exists, &status_events()),
        vec![true, true, true, true, false, true, false, true]
    );
    let missing = filter(vec![("field", s("status")), ("op", s("missing"))]);
    assert_eq!(
        kept(&missing, &status_events()),
        vec![false, false, false, false, true, false, true, false]
    );
}

#[test]
fn nested_paths_and_dotted_names() {
    let events = vec![
        obj(vec![
            ("big", Value::Array((0..100).map(Value::Int).collect())),
            ("http", obj(vec![("req", obj(vec![("method", s("POST"))]))])),
        ]),
        obj(vec![(
            "http",
            obj(vec![("req", obj(vec![("method", s("GET"))]))]),
        )]),
        obj(vec![("http.req.method", s("POST"))]),
        obj(vec![("http", s("not an object"))]),
        obj(vec![(
            "http",
            Value::Array(vec![obj(vec![("req", s("POST"))])]),
        )]),
        obj(vec![("method", s("POST"))]),
    ];
    let f = filter(vec![
        ("field", s("http.req.method")),
        ("op", s("eq")),
        ("value", s("POST")),
    ]);
    assert_eq!(
        kept(&f, &events),
        vec![true, false, true, false, false, false]
    );
}

#[test]
fn string_operators() {
    let events = vec![
        obj(vec![("msg", s("Notification time out: 3200"))]),
        obj(vec![("msg", s("Send worker leaving thread"))]),
        obj(vec![("msg", Value::Int(3200))]),
        obj(vec![("msg", Value::Bytes(b"time out".to_vec()))]),
    ];
    let contains = filter(vec![
        ("field", s("msg")),
        ("op", s("contains")),
        ("value", s("time out")),
    ]);
    assert_eq!(kept(&contains, &events), vec![true, false, false, true]);
    let prefix = filter(vec![
        ("field", s("msg")),
        ("op", s("prefix")),
        ("value", s("Send")),
    ]);
    assert_eq!(kept(&prefix, &events), vec![false, true, false, false]);
    let before = filter(vec![
        ("field", s("msg")),
        ("op", s("lt")),
        ("value", s("O")),
    ]);
    assert_eq!(kept(&before, &events), vec![true, false, false, false]);
}

#[test]
fn booleans_compare_for_equality() {
    let events = vec![
        obj(vec![("ok", Value::Bool(true))]),
        obj(vec![("ok", Value::Bool(false))]),
        obj(vec![("ok", Value::Int(1))]),
    ];
    let f = filter(vec![
        ("field", s("ok")),
        ("op", s("eq")),
        ("value", Value::Bool(true)),
    ]);
    assert_eq!(kept(&f, &events), vec![true, false, false]);
}

#[test]
fn a_large_batch_is_filtered_in_order() {
    let events: Vec<Value> = (0..1000)
        .map(|i| obj(vec![("i", Value::Int(i)), ("pad", s("x"))]))
        .collect();
    let f = filter(vec![
        ("field", s("i")),
        ("op", s("lt")),
        ("value", Value::Int(250)),
    ]);
    let kept = kept(&f, &events);
    assert_eq!(kept.len(), 1000);
    assert!(kept.iter().enumerate().all(|(i, &k)| k == (i < 250)));
}

#[test]
fn malformed_fields_do_not_panic() {
    let mut b = batch(&[obj(vec![("a", obj(vec![("b", Value::Int(1))]))])]);
    b.nodes
        .set_value(0, runnel_plugin_sdk::NodeValue::Object(9));
    b.nodes
        .set_value(1, runnel_plugin_sdk::NodeValue::Object(u32::MAX));
    let f = filter(vec![("field", s("a.b")), ("op", s("exists"))]);
    assert_eq!(f.intercept(&b).actions.len(), 1);
    b.events[0].fields.start = 1_000;
    assert!(matches!(f.intercept(&b).actions[0], Action::Drop));
}

#[test]
fn bad_config_names_the_key() {
    let err = |members| FieldFilter::new(&config(members)).unwrap_err();
    assert_eq!(
        err(vec![("op", s("exists"))]),
        "field-filter: config: `field` is required"
    );
    assert_eq!(
        err(vec![("field", s("a"))]),
        "field-filter: config: `op` is required"
    );
    assert_eq!(
        err(vec![("field", s("a..b")), ("op", s("exists"))]),
        "field-filter: config: `field` must be a name or a dotted path like a.b.c, got `a..b`"
    );
    assert_eq!(
        err(vec![("field", s("")), ("op", s("exists"))]),
        "field-filter: config: `field` must be a name or a dotted path like a.b.c, got ``"
    );
    assert_eq!(
        err(vec![("field", s("a")), ("op", s("eq"))]),
        "field-filter: config: `value` is required with op `eq`"
    );
    assert_eq!(
        err(vec![
            ("field", s("a")),
            ("op", s("exists")),
            ("action", s("pass"))
        ]),
        "field-filter: config: `action` must be \"keep\" or \"drop\", got `pass`"
    );
    assert_eq!(
        err(vec![("field", Value::Int(1)), ("op", s("exists"))]),
        "field-filter: config: `field` must be a string, got integer"
    );
    assert!(
        err(vec![
            ("field", s("a")),
            ("op", s("exists")),
            ("values", Value::Int(1))
        ])
        .starts_with("field-filter: config: unknown key `values`")
    );
    assert!(
        err(vec![
            ("field", s("a")),
            ("op", s("~")),
            ("value", Value::Int(1))
        ])
        .starts_with("field-filter: config: `op` must be one of")
    );
}

#[test]
fn it_reads_only_the_top_level_field_its_path_starts_with() {
    let exists = |field: &str| filter(vec![("field", s(field)), ("op", s("exists"))]);
    assert_eq!(exists("status").reads(), vec!["status"]);
    // A dotted path: the object it starts in, and a field literally named so.
    assert_eq!(exists("http.status").reads(), vec!["http", "http.status"]);
    // Given only those fields (what the host sends), the filter decides the same.
    let f = filter(vec![("field", s("http.status")), ("op", s("exists"))]);
    let full = obj(vec![
        ("http", obj(vec![("status", Value::Int(200))])),
        ("x", s("y")),
    ]);
    let projected = obj(vec![("http", obj(vec![("status", Value::Int(200))]))]);
    assert_eq!(kept(&f, &[full]), kept(&f, &[projected]));
}
