//! Every text is read as `serde_json` reads it: the same values, the same lookups, and the
//! same error for a text it refuses.

use std::path::Path;

use serde_json::Value as Json;
use zen_json::{Document, MAX_DEPTH, Value};

/// Reads `text` both ways and requires the same outcome.
fn check(text: &str) {
    let ours = Document::parse(text);
    let theirs = serde_json::from_str::<Json>(text);
    match (ours, theirs) {
        (Ok(doc), Ok(json)) => same(doc.root(), &json, text),
        (Err(ours), Err(theirs)) => {
            assert_eq!(ours.to_string(), theirs.to_string(), "error for {text:?}")
        }
        (Ok(_), Err(e)) => panic!("accepted what serde_json refuses ({e}): {text:?}"),
        (Err(e), Ok(_)) => panic!("refused what serde_json accepts ({e}): {text:?}"),
    }
}

/// `value` reads as `json` throughout: kind, scalars, lengths, every lookup and element.
fn same(value: Value<'_>, json: &Json, text: &str) {
    assert_eq!(value.to_serde(), *json, "{text:?}");
    assert_eq!(value.as_str(), json.as_str(), "{text:?}");
    assert_eq!(value.as_i64(), json.as_i64(), "{text:?}");
    assert_eq!(value.as_u64(), json.as_u64(), "{text:?}");
    assert_eq!(value.as_f64(), json.as_f64(), "{text:?}");
    assert_eq!(value.as_bool(), json.as_bool(), "{text:?}");
    assert_eq!(value.is_null(), json.is_null(), "{text:?}");
    match json {
        Json::Array(items) => {
            assert_eq!(value.len(), Some(items.len()), "{text:?}");
            let elements: Vec<_> = value.elements().expect("an array").collect();
            assert_eq!(elements.len(), items.len(), "{text:?}");
            for (i, (v, j)) in elements.into_iter().zip(items).enumerate() {
                same(v, j, text);
                assert_eq!(value.index(i), Some(v), "{text:?}");
            }
            assert_eq!(value.index(items.len()), None);
            assert!(value.get("0").is_none());
        }
        Json::Object(map) => {
            assert_eq!(value.len(), Some(map.len()), "{text:?}");
            let entries: Vec<_> = value.entries().expect("an object").collect();
            assert_eq!(entries.len(), map.len(), "{text:?}");
            for (k, v) in entries {
                assert_eq!(value.get(k), Some(v), "{text:?}: {k:?}");
                same(v, &map[k], text);
            }
            let sorted: Vec<_> = value.sorted_entries().expect("an object").collect();
            assert!(
                sorted
                    .iter()
                    .map(|(k, _)| *k)
                    .eq(map.keys().map(String::as_str))
            );
            assert!(
                sorted.iter().all(|(k, v)| value.get(k) == Some(*v)),
                "{text:?}"
            );
            assert!(value.get("no such key \u{1}").is_none());
            assert!(value.elements().is_none());
        }
        _ => {
            assert_eq!(value.len(), None);
            assert!(value.get("a").is_none() && value.elements().is_none());
        }
    }
}

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("testdata") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Every string of a capture named `bodyRaw`: the bodies exactly as they were on the wire.
fn raw_bodies(json: &Json, out: &mut Vec<String>) {
    match json {
        Json::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("bodyRaw", Json::String(s)) => out.push(s.clone()),
                    _ => raw_bodies(v, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| raw_bodies(v, out)),
        _ => {}
    }
}

#[test]
fn recorded_traffic_reads_as_serde_json_reads_it() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/kube-apiserver-1.28");
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    assert!(files.len() > 50, "{} recordings", files.len());
    let mut bodies = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("recording");
        check(&text);
        let mut raw = Vec::new();
        raw_bodies(
            &serde_json::from_str(&text).expect("a recording is JSON"),
            &mut raw,
        );
        for body in raw.iter().filter(|b| !b.is_empty()) {
            check(body);
            bodies += 1;
        }
    }
    assert!(bodies >= 30, "{bodies} recorded bodies");
}

/// A small deterministic generator, so that every run reads the same texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: [&str; 9] = [
    "a",
    "name",
    "namespace",
    "spec",
    "ab",
    "é",
    "a\\\"b",
    "\\u0061",
    "",
];
const STRINGS: [&str; 10] = [
    "",
    "plain",
    "a longer string that runs past eight bytes",
    "tab\\tand\\nnewline",
    "quote \\\" inside",
    "\\u00e9t\\u00e9",
    "\\ud83d\\ude00",
    "ünïcödé ✓",
    "slash \\/ and backslash \\\\",
    "0123456789abcdef0123456789",
];
const NUMBERS: [&str; 18] = [
    "0",
    "-0",
    "7",
    "-42",
    "123456789012345678",
    "-123456789012345678",
    "1234567890123456789",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1.5",
    "-0.25",
    "1e5",
    "2.5E-3",
    "6.02e+23",
    "0.1",
];
const SPACE: [&str; 5] = ["", "", " ", "\n  ", "\t\r\n"];

fn generate(rng: &mut Rng, depth: usize, out: &mut String) {
    let pad = |rng: &mut Rng, out: &mut String| out.push_str(rng.pick(&SPACE));
    pad(rng, out);
    let choice = if depth > 4 {
        2 + rng.below(4)
    } else {
        rng.below(6)
    };
    match choice {
        0 => {
            out.push('{');
            let n = rng.below(6);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                pad(rng, out);
                out.push('"');
                out.push_str(rng.pick(&KEYS));
                out.push('"');
                pad(rng, out);
                out.push(':');
                generate(rng, depth + 1, out);
            }
            pad(rng, out);
            out.push('}');
        }
        1 => {
            out.push('[');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                generate(rng, depth + 1, out);
            }
            pad(rng, out);
            out.push(']');
        }
        2 => {
            out.push('"');
            out.push_str(rng.pick(&STRINGS));
            out.push('"');
        }
        3 => out.push_str(rng.pick(&NUMBERS)),
        4 => out.push_str(rng.pick(&["true", "false", "null"])),
        _ => {
            out.push('"');
            out.push_str(rng.pick(&KEYS));
            out.push('"');
        }
    }
    pad(rng, out);
}

#[test]
fn generated_texts_their_cuts_and_changes_read_as_serde_json_reads_them() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut repeated, mut refused) = (0, 0);
    for _ in 0..400 {
        let mut text = String::new();
        generate(&mut rng, 0, &mut text);
        check(&text);
        if let Ok(doc) = Document::parse(&text) {
            // Objects that repeat a key are among the texts.
            let count = |v: &Value<'_>| v.entries().map_or(0, |e| e.count());
            if text.matches("\"a\"").count() > 1 && count(&doc.root()) > 0 {
                repeated += 1;
            }
        }
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                check(&text[..cut]);
            }
        }
        for _ in 0..8 {
            let at = rng.below(text.len().max(1));
            if !text.is_char_boundary(at) || !text.is_char_boundary(at + 1) || at >= text.len() {
                continue;
            }
            let with = rng.pick(&["\"", "\\", ",", "}", "]", "0", " ", "\u{1}", "x", "-", "."]);
            let mut changed = text.clone();
            changed.replace_range(at..at + 1, with);
            check(&changed);
            refused += usize::from(Document::parse(&changed).is_err());
        }
    }
    assert!(repeated > 0, "no generated object repeated a key");
    assert!(refused > 100, "only {refused} changed texts were refused");
}

#[test]
fn a_repeated_key_reads_as_its_last_value() {
    let text = r#"{"a": 1, "b": {"c": true}, "a": [2], "b": 3}"#;
    let doc = Document::parse(text).expect("JSON");
    let root = doc.root();
    assert_eq!(root.len(), Some(2));
    assert_eq!(
        root.get("a").map(|v| v.to_serde()),
        Some(serde_json::json!([2]))
    );
    assert_eq!(root.get("b").and_then(|v| v.as_i64()), Some(3));
    let keys: Vec<_> = root.entries().expect("object").map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b"]);
    check(text);
}

#[test]
fn entries_come_in_the_texts_order() {
    let doc = Document::parse(r#"{"z": 1, "a": 2, "m": 3}"#).expect("JSON");
    let keys: Vec<_> = doc
        .root()
        .entries()
        .expect("object")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["z", "a", "m"]);
}

#[test]
fn nesting_is_limited_as_serde_json_limits_it() {
    for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 10 * MAX_DEPTH] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check(&arrays);
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        check(&objects);
    }
    assert!(
        Document::parse(&format!(
            "{}{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        ))
        .is_ok()
    );
    assert!(
        Document::parse(&format!(
            "{}{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        ))
        .is_err()
    );
}

fn depth_of(json: &Json) -> usize {
    match json {
        Json::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        Json::Object(m) => 1 + m.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn deeper_texts_are_read_where_asked_and_know_their_depth() {
    let deep = format!(
        r#"{{"skipped": {}{}, "read": {{"a": [1, {{}}]}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(Document::parse(&deep).is_err());
    let doc = Document::parse_bytes_nested(deep.as_bytes(), 200_000).expect("deep JSON");
    assert_eq!(doc.root().depth(), 100_001);
    let read = doc.root().get("read").expect("read");
    assert_eq!(read.depth(), 3);
    assert_eq!(read.to_serde(), serde_json::json!({"a": [1, {}]}));
    let refused = Document::parse_bytes_nested(deep.as_bytes(), 1000).expect_err("too deep");
    assert!(
        refused.to_string().contains("nested more than 1000 levels"),
        "{refused}"
    );
    let mut rng = Rng(7);
    let mut exact = 0;
    for _ in 0..200 {
        let mut text = String::new();
        generate(&mut rng, 0, &mut text);
        let json: Json = serde_json::from_str(&text).expect("generated JSON");
        let doc = Document::parse(&text).expect("generated JSON");
        // Values a repeated key overrides count too: the depth bounds what a reader meets.
        let depth = doc.root().depth();
        assert!(depth >= depth_of(&json), "{text}");
        assert!(depth <= depth_of(&json) + 6, "{text}");
        exact += usize::from(depth == depth_of(&json));
    }
    assert!(exact > 150, "{exact} of 200 depths exact");
}

#[test]
fn malformed_texts_get_serde_jsons_errors() {
    for text in [
        "",
        " ",
        "01",
        "-",
        "-a",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{1:2}",
        "{\"a\":1 \"b\":2}",
        "nul",
        "tru",
        "falsey",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"a\u{1}b\"",
        "\"tab\tinside\"",
        "[1 2]",
        "1 2",
        "\"unterminated",
        "\"ends in a backslash\\",
        "1e400",
        "-1e400",
        "[\"\\",
        "[1]]",
        "{}}",
        "]",
        "}",
        "[-]",
        "[00]",
        "[-01]",
        "[1.e5]",
        "\u{feff}1",
        "NaN",
        "[Infinity]",
    ] {
        assert!(Document::parse(text).is_err(), "{text:?} accepted");
        check(text);
    }
}

#[test]
fn bytes_that_are_not_utf8_get_serde_jsons_error() {
    let bytes = b"{\"a\": \"\xff\"}";
    let ours = Document::parse_bytes(bytes).expect_err("not UTF-8");
    let theirs = serde_json::from_slice::<Json>(bytes).expect_err("not UTF-8");
    assert_eq!(ours.to_string(), theirs.to_string());
    let doc = Document::parse_bytes(br#"{"a": "\u00e9"}"#).expect("JSON");
    assert_eq!(doc.root().get("a").and_then(|v| v.as_str()), Some("é"));
}

#[test]
fn long_objects_find_every_key_in_order_or_not() {
    // Keys as written and as read, some with escapes; long enough to be searched by halves
    // when in order.
    let mut keys: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{i:02}"), format!("k{i:02}")))
        .collect();
    keys.push((r#"k1\u0030x"#.into(), "k10x".into()));
    keys.push((r#"a\"q"#.into(), "a\"q".into()));
    keys.push((
        "longer than eight bytes".into(),
        "longer than eight bytes".into(),
    ));
    keys.push(("".into(), "".into()));
    keys.sort_by(|a, b| a.1.cmp(&b.1));
    let text = |keys: &[(String, String)]| {
        let fields: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, _))| format!("\"{k}\":{i}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    };
    let in_order = text(&keys);
    check(&in_order);
    let doc = Document::parse(&in_order).expect("JSON");
    for (i, (_, key)) in keys.iter().enumerate() {
        assert_eq!(doc.root().get(key).and_then(|v| v.as_i64()), Some(i as i64));
    }
    for missing in ["k", "k40", "k0", "zzz", "a", "longer than eight byteS"] {
        assert!(doc.root().get(missing).is_none(), "{missing}");
    }
    keys.reverse();
    check(&text(&keys));
}
