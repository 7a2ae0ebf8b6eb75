//! The reader: one pass over the text, with the open containers on a stack of its own, so
//! depth costs no call stack. A container's contents gather at the end of a scratch table
//! while it is open and move into the document's tables, side by side, when it closes.
//! Anything the reader does not read itself (escapes, numbers other than plain integers)
//! goes to `serde_json`, and so does any text it refuses, for the message.

use std::fmt;

use crate::{Document, Entry, Node, Str};

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

/// A container being read.
struct Open {
    object: bool,
    /// Where its contents begin in the scratch table of its kind.
    start: usize,
    /// The key whose value it is, inside an object.
    key: Str,
    /// Whether its keys have come in order so far.
    sorted: bool,
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    entries: Vec<Entry>,
    items: Vec<Node>,
    /// The contents of the open containers, innermost last.
    open_entries: Vec<Entry>,
    open_items: Vec<Node>,
    unescaped: String,
    repeats: bool,
    stack: Vec<Open>,
    max_depth: usize,
}

/// The longest text a document reads: string lengths keep a bit for a flag.
const MAX_TEXT: usize = (Str::ESCAPED - 1) as usize;

pub(crate) fn parse(text: &str, max_depth: usize) -> Result<Document<'_>, Error> {
    if text.len() > MAX_TEXT {
        return Err(Error(serde::de::Error::custom(
            "a document is at most 2 GiB of text",
        )));
    }
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        // Reviews and payloads have an entry for every 20 to 30 bytes, few arrays.
        entries: Vec::with_capacity(text.len() / 24 + 4),
        items: Vec::with_capacity(text.len() / 128 + 4),
        open_entries: Vec::with_capacity(32),
        open_items: Vec::with_capacity(16),
        unescaped: String::new(),
        repeats: false,
        stack: Vec::with_capacity(16),
        max_depth,
    };
    match p.document() {
        Ok(root) => Ok(Document {
            text,
            root,
            entries: p.entries,
            items: p.items,
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

/// Positions and counts, bounded by the text's length, which fits in a `u32`.
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

/// What no key can be: the key of a value outside any object.
const NO_KEY: Str = Str { at: 0, len: 0 };

impl Parser<'_> {
    /// The whole text: one value and only whitespace after it. The reader's place is a
    /// local here, kept in a register through the loop; `pos` is set where it stops.
    fn document(&mut self) -> Step<Node> {
        let bytes = self.bytes;
        let mut at = skip(bytes, 0);
        // The key of the value being read, inside an object.
        let mut key = NO_KEY;
        // Whether the innermost open container is an object.
        let mut object = false;
        loop {
            self.pos = at;
            let mut node = match *bytes.get(at).ok_or(Refused)? {
                b'"' => {
                    let (s, next) = self.string(at)?;
                    at = next;
                    Node::Str(s)
                }
                open @ (b'{' | b'[') => {
                    if self.stack.len() >= self.max_depth {
                        return Err(Refused);
                    }
                    object = open == b'{';
                    self.stack.push(Open {
                        object,
                        start: if object {
                            self.open_entries.len()
                        } else {
                            self.open_items.len()
                        },
                        key,
                        sorted: true,
                    });
                    at = skip(bytes, at + 1);
                    let close = if object { b'}' } else { b']' };
                    if bytes.get(at) != Some(&close) {
                        if object {
                            (key, at) = self.key(at)?;
                        }
                        continue;
                    }
                    let node;
                    (node, key, object) = self.close()?;
                    at += 1;
                    node
                }
                b't' => {
                    at = literal(bytes, at, b"true")?;
                    Node::Bool(true)
                }
                b'f' => {
                    at = literal(bytes, at, b"false")?;
                    Node::Bool(false)
                }
                b'n' => {
                    at = literal(bytes, at, b"null")?;
                    Node::Null
                }
                b'-' | b'0'..=b'9' => {
                    let node;
                    (node, at) = self.number(at)?;
                    node
                }
                _ => return Err(Refused),
            };
            // A value is complete: place it in its container, close what that completes,
            // or go on to the next value.
            loop {
                if self.stack.is_empty() {
                    self.pos = skip(bytes, at);
                    return if self.pos == bytes.len() {
                        Ok(node)
                    } else {
                        Err(Refused)
                    };
                }
                if object {
                    self.open_entries.push(Entry { key, value: node });
                } else {
                    self.open_items.push(node);
                }
                at = skip(bytes, at);
                match bytes.get(at) {
                    Some(b',') => {
                        at = skip(bytes, at + 1);
                        if object {
                            (key, at) = self.key(at)?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        (node, key, object) = self.close()?;
                        at += 1;
                    }
                    Some(b']') if !object => {
                        (node, key, object) = self.close()?;
                        at += 1;
                    }
                    _ => return Err(Refused),
                }
            }
        }
    }

    /// A key at `at` (its opening quote) and its colon; notes whether the object's keys
    /// are still in order. Gives the key and the place of its value.
    fn key(&mut self, at: usize) -> Step<(Str, usize)> {
        if self.bytes.get(at) != Some(&b'"') {
            return Err(Refused);
        }
        let (key, at) = self.string(at)?;
        let top = self.stack.last_mut().ok_or(Refused)?;
        if top.sorted
            && let Some(previous) = self.open_entries.get(top.start..).and_then(<[Entry]>::last)
        {
            top.sorted = in_order(self.bytes, &self.unescaped, previous.key, key);
        }
        let at = skip(self.bytes, at);
        if self.bytes.get(at) != Some(&b':') {
            return Err(Refused);
        }
        Ok((key, skip(self.bytes, at + 1)))
    }

    /// Ends the innermost container: its contents move into the document's table. Gives
    /// its node, the key it is the value of, and whether the container it is in (now the
    /// innermost) is an object.
    fn close(&mut self) -> Step<(Node, Str, bool)> {
        let open = self.stack.pop().ok_or(Refused)?;
        let node = if open.object {
            if !open.sorted {
                self.drop_overridden(open.start);
            }
            let first = small(self.entries.len());
            let contents = self.open_entries.get(open.start..).unwrap_or_default();
            self.entries.extend_from_slice(contents);
            let len = small(contents.len());
            self.open_entries.truncate(open.start);
            Node::Object {
                first,
                len,
                sorted: open.sorted,
            }
        } else {
            let first = small(self.items.len());
            let contents = self.open_items.get(open.start..).unwrap_or_default();
            self.items.extend_from_slice(contents);
            let len = small(contents.len());
            self.open_items.truncate(open.start);
            Node::Array { first, len }
        };
        let object = self.stack.last().is_some_and(|o| o.object);
        Ok((node, open.key, object))
    }

    /// Removes the entries from `start` on whose key comes again later: a repeated key
    /// reads as its last value, where that value was. Keys in order repeat none, so only
    /// objects with keys out of order get here.
    fn drop_overridden(&mut self, start: usize) {
        let key = |e: &Entry| bytes_of(self.bytes, &self.unescaped, e.key);
        let entries = self.open_entries.get(start..).unwrap_or_default();
        let overridden: Vec<bool> = if entries.len() <= PAIRWISE {
            // Most keys differ in length: pairs are told apart without reading them.
            let repeated = |(i, a): (usize, &Entry)| {
                entries[i + 1..]
                    .iter()
                    .any(|b| a.key.len() == b.key.len() && key(a) == key(b))
            };
            if !entries.iter().enumerate().any(repeated) {
                return;
            }
            entries.iter().enumerate().map(repeated).collect()
        } else {
            // The last place of each key, found through the keys sorted (stable: equal keys
            // keep their order, so the last of a run is the one that counts).
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_by(|&a, &b| key(&entries[a]).cmp(key(&entries[b])));
            let mut out = vec![false; entries.len()];
            for pair in order.windows(2) {
                if key(&entries[pair[0]]) == key(&entries[pair[1]]) {
                    out[pair[0]] = true;
                }
            }
            out
        };
        if !overridden.contains(&true) {
            return;
        }
        self.repeats = true;
        let mut i = 0;
        self.open_entries.retain(|_| {
            let keep = i < start || !overridden[i - start];
            i += 1;
            keep
        });
    }

    /// A string, its opening quote at `at`; gives the string and the place past it.
    #[inline(always)]
    fn string(&mut self, at: usize) -> Step<(Str, usize)> {
        let bytes = self.bytes;
        let start = at + 1;
        let mut i = start;
        // Eight bytes at a time up to a quote, a backslash or a control character.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let chunk = u64::from_le_bytes(chunk.try_into().map_err(|_| Refused)?);
            let special = equal(chunk, b'"') | equal(chunk, b'\\') | below(chunk, 0x20);
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        loop {
            match bytes.get(i).copied().ok_or(Refused)? {
                0..=0x1f => return Err(Refused),
                b'"' => {
                    let s = Str {
                        at: small(start),
                        len: small(i - start),
                    };
                    return Ok((s, i + 1));
                }
                b'\\' => return self.escaped(at, i),
                _ => i += 1,
            }
        }
    }

    /// A string opening at `at` with an escape at `i`, unescaped by `serde_json`.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, at: usize, mut i: usize) -> Step<(Str, usize)> {
        loop {
            match self.bytes.get(i).copied().ok_or(Refused)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let quoted = self.text.get(at..=i).ok_or(Refused)?;
        let s: String = serde_json::from_str(quoted).map_err(|_| Refused)?;
        let start = small(self.unescaped.len());
        self.unescaped.push_str(&s);
        let s = Str {
            at: start,
            len: small(s.len()) | Str::ESCAPED,
        };
        Ok((s, i + 1))
    }

    /// A number at `at`: plain integers of up to 18 digits here, any other by `serde_json`.
    /// Gives its node and the place past it.
    fn number(&mut self, at: usize) -> Step<(Node, usize)> {
        let bytes = self.bytes;
        let start = at;
        let mut i = start;
        let negative = bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let digits = i;
        while let Some(b'0'..=b'9') = bytes.get(i) {
            i += 1;
        }
        let plain = !matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
        let count = i - digits;
        let leading_zero = bytes.get(digits) == Some(&b'0');
        if plain && count > 0 && count <= 18 && (!leading_zero || (count == 1 && !negative)) {
            let mut n: i64 = 0;
            for &d in &bytes[digits..i] {
                n = n * 10 + i64::from(d - b'0');
            }
            return Ok((Node::Int(if negative { -n } else { n }), i));
        }
        // The whole token, as far as a number could reach; serde_json decides what it is.
        while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = bytes.get(i) {
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
        Ok((node, i))
    }
}

/// The place of the first byte at or after `at` that is not whitespace.
#[inline(always)]
fn skip(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The place past `word` (`true`, `false`, `null`), which must be at `at`.
fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Step<usize> {
    if bytes.get(at..).is_some_and(|rest| rest.starts_with(word)) {
        Ok(at + word.len())
    } else {
        Err(Refused)
    }
}

/// The bytes of a string read so far, from the text or the unescaped strings.
fn bytes_of<'a>(text: &'a [u8], unescaped: &'a str, s: Str) -> &'a [u8] {
    let from = if s.len & Str::ESCAPED == 0 {
        text
    } else {
        unescaped.as_bytes()
    };
    let at = s.at as usize;
    from.get(at..at + s.len()).unwrap_or_default()
}

/// Key `a` before key `b`, deciding on the first byte where it can: keys mostly differ
/// there.
fn in_order(text: &[u8], unescaped: &str, a: Str, b: Str) -> bool {
    // Both without escapes and not empty: their first bytes are in the text.
    if (a.len | b.len) & Str::ESCAPED == 0
        && a.len != 0
        && b.len != 0
        && let (Some(x), Some(y)) = (text.get(a.at as usize), text.get(b.at as usize))
        && x != y
    {
        return x < y;
    }
    bytes_of(text, unescaped, a) < bytes_of(text, unescaped, b)
}
