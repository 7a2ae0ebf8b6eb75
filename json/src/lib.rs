//! A JSON document read once into a flat list of nodes, in document order, so that readers
//! (the schema walk, the CRD rules, CEL) can look values up in place. A `serde_json::Value`
//! allocates every key, string, array and map of the text and keeps maps as B-trees; an
//! admission review spent about as much in building and dropping it as in all its policies.
//!
//! What the document accepts, and every value it reads, is what `serde_json` would: escaped
//! strings and numbers other than plain integers are read by `serde_json` itself, an error
//! is `serde_json`'s own, and a key an object repeats reads as its last value, as
//! `serde_json::Map` keeps it.

mod de;
mod parse;
mod read;
mod value;

pub use parse::{Error, MAX_DEPTH};
pub use read::ReadJson;
pub use value::{Elements, Entries, Kind, Number, SortedEntries, Value};

/// A parsed document borrowing its text.
#[derive(Debug, Clone)]
pub struct Document<'t> {
    text: &'t str,
    nodes: Vec<Node>,
    /// Strings that had escapes, unescaped, back to back.
    unescaped: String,
    /// Whether some object repeats a key: lookups then look on past the first match.
    repeats: bool,
}

/// One value. A container is followed by its contents (an object's as key, value, key,
/// value …) and knows where they end, so a reader skips a value in one step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// A string without escapes, at `at..at + len` of the text.
    Str {
        at: u32,
        len: u32,
    },
    /// A string that had escapes, at `at..at + len` of `unescaped`.
    Unescaped {
        at: u32,
        len: u32,
    },
    /// `len` elements; `end` is the index past the last node of the contents.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` distinct keys; `sorted` when they come in order, none repeated, as
    /// kube-apiserver writes the objects of custom resources.
    Object {
        len: u32,
        end: u32,
        sorted: bool,
    },
}

impl<'t> Document<'t> {
    /// Reads `text`, which must be one JSON value with only whitespace around it, nested
    /// at most [`MAX_DEPTH`] levels.
    pub fn parse(text: &'t str) -> Result<Self, Error> {
        parse::parse(text, MAX_DEPTH)
    }

    /// Reads `bytes`, which must be UTF-8.
    pub fn parse_bytes(bytes: &'t [u8]) -> Result<Self, Error> {
        Self::parse_bytes_nested(bytes, MAX_DEPTH)
    }

    /// Reads `bytes` nested at most `max_depth` levels: for texts whose deep parts are
    /// skipped by their readers, which then check the [`depth`](Value::depth) of what they
    /// read. Reading needs no call stack, but converting a value into `serde_json` or a
    /// typed value recurses, so such values must be no deeper than [`MAX_DEPTH`].
    pub fn parse_bytes_nested(bytes: &'t [u8], max_depth: usize) -> Result<Self, Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => parse::parse(text, max_depth),
            Err(_) => Err(parse::serde_error(bytes)),
        }
    }

    /// The document's value.
    pub fn root(&self) -> Value<'_> {
        Value::new(self, 0)
    }

    pub(crate) fn strings(&self) -> parse::Strings<'_> {
        parse::Strings {
            text: self.text,
            unescaped: &self.unescaped,
        }
    }

    /// The text the document was read from.
    pub fn text(&self) -> &'t str {
        self.text
    }
}
