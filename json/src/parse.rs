//! The reader: one pass over the text, with the open containers on a stack of its own, so
//! depth costs no call stack. Anything it does not read itself (escapes, numbers other than
//! plain integers) goes to `serde_json`, and so does any text it refuses, for the message.

use std::fmt;

use crate::{Document, Node};

/// Containers nested deeper than this are refused by [`Document::parse`](crate::Document::parse),
/// as `serde_json` refuses them.
pub const MAX_DEPTH: usize = 127;

/// Objects up to this many keys are checked for a repeated key pair by pair; larger ones by
/// sorting their keys.
const PAIRWISE: usize = 32;

/// Why a text is not a document: `serde_json`'s own error for it.
#[derive(Debug)]
pub struct Error(serde_json::Error);

impl Error {
    pub fn into_serde(self) -> serde_json::Error {
        self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `serde_json`'s error for a text the reader refused.
pub(crate) fn serde_error(bytes: &[u8]) -> Error {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => Error(e),
        // Never expected: the reader refuses only what serde_json refuses.
        Ok(_) => Error(serde::de::Error::custom(
            "the text was refused by zen-json but not by serde_json",
        )),
    }
}

/// A refusal; the message comes from `serde_json` when the whole parse gives up.
struct Refused;

type Step<T> = Result<T, Refused>;

struct Open {
    /// The container's node.
    at: usize,
    len: u32,
    object: bool,
    /// An object's latest key node, and whether its keys have come in order so far.
    last_key: Option<usize>,
    sorted: bool,
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    nodes: Vec<Node>,
    unescaped: String,
    repeats: bool,
    stack: Vec<Open>,
    /// Key nodes of the object being closed, reused.
    keys: Vec<usize>,
    max_depth: usize,
}

pub(crate) fn parse(text: &str, max_depth: usize) -> Result<Document<'_>, Error> {
    if u32::try_from(text.len()).is_err() {
        return Err(Error(serde::de::Error::custom(
            "a document is at most 4 GiB of text",
        )));
    }
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        // Most texts have a node for every 8 to 16 bytes.
        nodes: Vec::with_capacity(text.len() / 12 + 4),
        unescaped: String::new(),
        repeats: false,
        stack: Vec::new(),
        keys: Vec::new(),
        max_depth,
    };
    match p.document() {
        Ok(()) => Ok(Document {
            text,
            nodes: p.nodes,
            unescaped: p.unescaped,
            repeats: p.repeats,
        }),
        Err(Refused) if p.stack.len() >= max_depth && max_depth != MAX_DEPTH => {
            Err(Error(serde::de::Error::custom(format!(
                "nested more than {max_depth} levels at byte {}",
                p.pos
            ))))
        }
        Err(Refused) => Err(serde_error(text.as_bytes())),
    }
}

/// Positions bounded by the text's length, which fits in a `u32`.
fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bytes of `chunk` below `n` (`n` ≤ 128) marked by their high bit; exact up to the first.
fn below(chunk: u64, n: u8) -> u64 {
    chunk.wrapping_sub(ONES * u64::from(n)) & !chunk & HIGHS
}

/// Bytes of `chunk` equal to `b`; exact up to the first.
fn equal(chunk: u64, b: u8) -> u64 {
    below(chunk ^ (ONES * u64::from(b)), 1)
}

impl Parser<'_> {
    fn strings(&self) -> Strings<'_> {
        Strings {
            text: self.text,
            unescaped: &self.unescaped,
        }
    }

    fn document(&mut self) -> Step<()> {
        self.value()?;
        self.skip_whitespace();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Step<()> {
        self.skip_whitespace();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// One value and all it contains.
    fn value(&mut self) -> Step<()> {
        loop {
            self.skip_whitespace();
            match self.peek().ok_or(Refused)? {
                open @ (b'{' | b'[') => {
                    if self.stack.len() >= self.max_depth {
                        return Err(Refused);
                    }
                    self.pos += 1;
                    let object = open == b'{';
                    let at = self.nodes.len();
                    self.nodes.push(Node::Null);
                    self.stack.push(Open {
                        at,
                        len: 0,
                        object,
                        last_key: None,
                        sorted: true,
                    });
                    self.skip_whitespace();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        self.close()?;
                    } else {
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true", Node::Bool(true))?,
                b'f' => self.literal(b"false", Node::Bool(false))?,
                b'n' => self.literal(b"null", Node::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(Refused),
            }
            // A value is complete: close what it completes, or find the next value.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return Ok(());
                };
                top.len += 1;
                let object = top.object;
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        self.close()?;
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        self.close()?;
                    }
                    _ => return Err(Refused),
                }
            }
        }
    }

    /// A key and its colon.
    fn key(&mut self) -> Step<()> {
        self.skip_whitespace();
        if self.peek() != Some(b'"') {
            return Err(Refused);
        }
        self.string()?;
        let key = self.nodes.len() - 1;
        // Still in order after this key? Asked only while the object's keys have been.
        let previous = self
            .stack
            .last()
            .filter(|top| top.sorted)
            .and_then(|top| top.last_key);
        let strings = self.strings();
        let ordered = previous
            .map(|last| in_order(strings.of(self.nodes[last]), strings.of(self.nodes[key])));
        if let Some(top) = self.stack.last_mut() {
            if let Some(ordered) = ordered {
                top.sorted = ordered;
            }
            top.last_key = Some(key);
        }
        self.expect(b':')
    }

    /// Ends the innermost container; a closed object that repeats a key counts it once.
    fn close(&mut self) -> Step<()> {
        let open = self.stack.pop().ok_or(Refused)?;
        let end = small(self.nodes.len());
        self.nodes[open.at] = if open.object {
            // Keys in order repeat none; only others need counting.
            let len = if open.sorted {
                open.len
            } else {
                self.distinct_keys(open.at, open.len)
            };
            Node::Object {
                len,
                end,
                sorted: open.sorted,
            }
        } else {
            Node::Array { len: open.len, end }
        };
        Ok(())
    }

    /// How many distinct keys the object at `at` has.
    fn distinct_keys(&mut self, at: usize, entries: u32) -> u32 {
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        let mut i = at + 1;
        while i < self.nodes.len() {
            keys.push(i);
            i = crate::value::next(&self.nodes, i + 1);
        }
        let doc = self.strings();
        let distinct = if keys.len() <= PAIRWISE {
            let mut n = 0;
            for (k, &key) in keys.iter().enumerate() {
                let s = doc.of(self.nodes[key]);
                if !keys[..k]
                    .iter()
                    .any(|&prior| doc.of(self.nodes[prior]) == s)
                {
                    n += 1;
                }
            }
            n
        } else {
            let mut strs: Vec<&str> = keys.iter().map(|&k| doc.of(self.nodes[k])).collect();
            strs.sort_unstable();
            strs.dedup();
            strs.len()
        };
        self.keys = keys;
        let distinct = small(distinct);
        if distinct != entries {
            self.repeats = true;
        }
        distinct
    }

    fn literal(&mut self, word: &[u8], node: Node) -> Step<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.nodes.push(node);
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// A string, its opening quote at `pos`.
    fn string(&mut self) -> Step<()> {
        let start = self.pos + 1;
        let mut i = start;
        // Eight bytes at a time up to a quote, a backslash or a control character.
        while let Some(chunk) = self.bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            let chunk = u64::from_le_bytes(*chunk);
            let special = equal(chunk, b'"') | equal(chunk, b'\\') | below(chunk, 0x20);
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        loop {
            match self.bytes.get(i).copied().ok_or(Refused)? {
                b'"' => {
                    self.nodes.push(Node::Str {
                        at: small(start),
                        len: small(i - start),
                    });
                    self.pos = i + 1;
                    return Ok(());
                }
                b'\\' => return self.escaped(i),
                0..=0x1f => return Err(Refused),
                _ => i += 1,
            }
        }
    }

    /// A string with an escape at `i`, unescaped by `serde_json`.
    fn escaped(&mut self, mut i: usize) -> Step<()> {
        loop {
            match self.bytes.get(i).copied().ok_or(Refused)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let quoted = self.text.get(self.pos..=i).ok_or(Refused)?;
        let s: String = serde_json::from_str(quoted).map_err(|_| Refused)?;
        let at = small(self.unescaped.len());
        self.unescaped.push_str(&s);
        self.nodes.push(Node::Unescaped {
            at,
            len: small(s.len()),
        });
        self.pos = i + 1;
        Ok(())
    }

    /// A number: plain integers of up to 18 digits here, any other by `serde_json`.
    fn number(&mut self) -> Step<()> {
        let start = self.pos;
        let mut i = start;
        let negative = self.bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let digits = i;
        while let Some(b'0'..=b'9') = self.bytes.get(i) {
            i += 1;
        }
        let plain = !matches!(self.bytes.get(i), Some(b'.' | b'e' | b'E'));
        let count = i - digits;
        let leading_zero = self.bytes.get(digits) == Some(&b'0');
        if plain && count > 0 && count <= 18 && (!leading_zero || (count == 1 && !negative)) {
            let mut n: i64 = 0;
            for &d in &self.bytes[digits..i] {
                n = n * 10 + i64::from(d - b'0');
            }
            self.nodes.push(Node::Int(if negative { -n } else { n }));
            self.pos = i;
            return Ok(());
        }
        // The whole token, as far as a number could reach; serde_json decides what it is.
        while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.bytes.get(i) {
            i += 1;
        }
        let token = self.text.get(start..i).ok_or(Refused)?;
        let number: serde_json::Number = serde_json::from_str(token).map_err(|_| Refused)?;
        let node = if let Some(n) = number.as_i64() {
            Node::Int(n)
        } else if let Some(n) = number.as_u64() {
            Node::Uint(n)
        } else {
            Node::Float(number.as_f64().ok_or(Refused)?)
        };
        self.nodes.push(node);
        self.pos = i;
        Ok(())
    }
}

/// `a < b`, deciding on the first byte where it can (keys mostly differ there).
fn in_order(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a < b,
    }
}

/// Where strings are read from.
pub(crate) struct Strings<'d> {
    pub(crate) text: &'d str,
    pub(crate) unescaped: &'d str,
}

impl<'d> Strings<'d> {
    /// The string of a string node; "" for any other.
    pub(crate) fn of(&self, node: Node) -> &'d str {
        let (from, at, len) = match node {
            Node::Str { at, len } => (self.text, at, len),
            Node::Unescaped { at, len } => (self.unescaped, at, len),
            _ => return "",
        };
        let at = at as usize;
        from.get(at..at + len as usize).unwrap_or_default()
    }
}
