//! A JSON document read once into nodes that readers (the schema walk, the CRD rules, CEL,
//! typed decoding) look values up in place. A `serde_json::Value` allocates every key,
//! string, array and map of the text and keeps maps as B-trees; an admission review spent
//! about as much in building and dropping it as in all its policies.
//!
//! Each object's entries, and each array's elements, lie side by side in one table of the
//! document, so a lookup scans one short slice and an iteration reads each entry once.
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
pub use value::{Elements, Entries, Key, Kind, Number, Read, SortedEntries, Value};

/// A parsed document borrowing its text.
#[derive(Debug, Clone)]
pub struct Document<'t> {
    text: &'t str,
    root: Node,
    /// Every object's entries, each object's side by side, in the text's order; a key an
    /// object repeats is there once, where its last value was.
    entries: Vec<Entry>,
    /// Every array's elements, each array's side by side.
    items: Vec<Node>,
    /// Strings that had escapes, unescaped, back to back.
    unescaped: String,
    /// Whether some object repeats a key.
    repeats: bool,
}

/// A string of the document: bytes at `at` of the text, or of the unescaped strings where
/// `len` carries [`Str::ESCAPED`]. Eight bytes, so an entry is 24.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Str {
    at: u32,
    len: u32,
}

impl Str {
    /// The flag in `len` of a string that had escapes.
    pub(crate) const ESCAPED: u32 = 1 << 31;

    /// The string's length in bytes.
    pub(crate) fn len(self) -> usize {
        (self.len & !Self::ESCAPED) as usize
    }
}

/// One entry of an object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    key: Str,
    value: Node,
}

/// One value; a container's contents are `len` entries or elements from `first` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Str),
    Array {
        first: u32,
        len: u32,
    },
    /// `sorted` when the keys come in order, none repeated, as kube-apiserver writes the
    /// objects of custom resources.
    Object {
        first: u32,
        len: u32,
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
        Value::new(self, &self.root)
    }

    /// The text of one of the document's strings.
    pub(crate) fn str(&self, s: Str) -> &str {
        let from = if s.len & Str::ESCAPED == 0 {
            self.text
        } else {
            self.unescaped.as_str()
        };
        let at = s.at as usize;
        from.get(at..at + s.len()).unwrap_or_default()
    }

    /// Whether some object of the text repeats a key (read as its last value): typed
    /// decoding from the text would refuse a repeated field.
    pub fn repeats(&self) -> bool {
        self.repeats
    }

    /// The text the document was read from.
    pub fn text(&self) -> &'t str {
        self.text
    }
}
