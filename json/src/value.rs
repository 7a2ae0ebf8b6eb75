//! Reading a document in place: a value is the document and one of its nodes.

use std::fmt;

use crate::{Document, Entry, Node, Str};

/// What a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// A number as `serde_json` reads it: an integer that fits `i64`, else one that fits `u64`,
/// else a double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// A value as [`Value::read`] gives it: a scalar with its content, or which container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Read<'d> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'d str),
    Array,
    Object,
}

/// A value of a document.
#[derive(Clone, Copy)]
pub struct Value<'d> {
    doc: &'d Document<'d>,
    pub(crate) node: &'d Node,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_serde())
    }
}

impl PartialEq for Value<'_> {
    /// Same document and place: the same value.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.doc, other.doc) && std::ptr::eq(self.node, other.node)
    }
}

impl<'d> Value<'d> {
    pub(crate) fn new(doc: &'d Document<'d>, node: &'d Node) -> Self {
        Self { doc, node }
    }

    pub fn kind(&self) -> Kind {
        match self.node {
            Node::Null => Kind::Null,
            Node::Bool(_) => Kind::Bool,
            Node::Int(_) | Node::Uint(_) | Node::Float(_) => Kind::Number,
            Node::Str(_) => Kind::String,
            Node::Array { .. } => Kind::Array,
            Node::Object { .. } => Kind::Object,
        }
    }

    /// What the value is, with a scalar's content, in one look.
    pub fn read(&self) -> Read<'d> {
        match *self.node {
            Node::Null => Read::Null,
            Node::Bool(b) => Read::Bool(b),
            Node::Int(i) => Read::Number(Number::Int(i)),
            Node::Uint(u) => Read::Number(Number::Uint(u)),
            Node::Float(f) => Read::Number(Number::Float(f)),
            Node::Str(s) => Read::Str(self.doc.str(s)),
            Node::Array { .. } => Read::Array,
            Node::Object { .. } => Read::Object,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.node, Node::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.node {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<Number> {
        match *self.node {
            Node::Int(i) => Some(Number::Int(i)),
            Node::Uint(u) => Some(Number::Uint(u)),
            Node::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self.node {
            Node::Int(i) => Some(i),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self.node {
            Node::Int(i) => u64::try_from(i).ok(),
            Node::Uint(u) => Some(u),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self.node {
            Node::Int(i) => Some(i as f64),
            Node::Uint(u) => Some(u as f64),
            Node::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'d str> {
        match *self.node {
            Node::Str(s) => Some(self.doc.str(s)),
            _ => None,
        }
    }

    /// Elements of an array or distinct keys of an object; `None` for anything else.
    pub fn len(&self) -> Option<usize> {
        match *self.node {
            Node::Array { len, .. } | Node::Object { len, .. } => Some(len as usize),
            _ => None,
        }
    }

    /// An array without elements or an object without keys; `None` for anything else.
    pub fn is_empty(&self) -> Option<bool> {
        self.len().map(|n| n == 0)
    }

    /// An array's elements.
    fn items(&self) -> Option<&'d [Node]> {
        match *self.node {
            Node::Array { first, len } => self
                .doc
                .items
                .get(first as usize..first as usize + len as usize),
            _ => None,
        }
    }

    /// The document the value is of.
    pub(crate) fn doc(&self) -> &'d Document<'d> {
        self.doc
    }

    /// An object's entries.
    pub(crate) fn object(&self) -> Option<&'d [Entry]> {
        match *self.node {
            Node::Object { first, len, .. } => self
                .doc
                .entries
                .get(first as usize..first as usize + len as usize),
            _ => None,
        }
    }

    /// How deeply containers nest in this value: 0 for a scalar, 1 for `[]` or `[1]`.
    pub fn depth(&self) -> usize {
        // Containers still to look into, with their depth; no call stack, whatever the depth.
        let mut open: Vec<(Value<'d>, usize)> = vec![(*self, 0)];
        let mut deepest = 0;
        while let Some((v, above)) = open.pop() {
            let inner: &mut dyn Iterator<Item = &'d Node> = match (v.items(), v.object()) {
                (Some(items), _) => &mut items.iter(),
                (_, Some(entries)) => &mut entries.iter().map(|e| &e.value),
                _ => continue,
            };
            let depth = above + 1;
            deepest = deepest.max(depth);
            for node in inner {
                if matches!(node, Node::Array { .. } | Node::Object { .. }) {
                    open.push((Value::new(self.doc, node), depth));
                }
            }
        }
        deepest
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<Value<'d>> {
        self.find(key.as_bytes(), || Some(Head::of(key.as_bytes())))
    }

    /// The value of a [`Key`] in an object: for keys looked up again and again, prepared
    /// once.
    pub fn get_key(&self, key: &Key) -> Option<Value<'d>> {
        self.find(key.text.as_bytes(), || Some(key.head))
    }

    /// Small objects are scanned, comparing heads; large ones in key order are searched by
    /// halves, out of line.
    #[inline(always)]
    fn find(&self, key: &[u8], head: impl FnOnce() -> Option<Head>) -> Option<Value<'d>> {
        let Node::Object { first, len, sorted } = *self.node else {
            return None;
        };
        let entries = self
            .doc
            .entries
            .get(first as usize..first as usize + len as usize)?;
        if sorted && entries.len() > SCANNED {
            return self.search(entries, key);
        }
        let head = head()?;
        entries
            .iter()
            .find(|e| head.is(self.doc, e.key, key))
            .map(|e| Value::new(self.doc, &e.value))
    }

    #[inline(never)]
    fn search(&self, entries: &'d [Entry], key: &[u8]) -> Option<Value<'d>> {
        let i = entries
            .binary_search_by(|e| self.doc.str(e.key).as_bytes().cmp(key))
            .ok()?;
        entries.get(i).map(|e| Value::new(self.doc, &e.value))
    }

    /// The element at `index` of an array.
    pub fn index(&self, index: usize) -> Option<Value<'d>> {
        self.items()?
            .get(index)
            .map(|node| Value::new(self.doc, node))
    }

    /// The elements of an array.
    pub fn elements(&self) -> Option<Elements<'d>> {
        Some(Elements {
            doc: self.doc,
            items: self.items()?.iter(),
        })
    }

    /// The entries of an object in the text's order; a repeated key once, with its last
    /// value, where that value was.
    pub fn entries(&self) -> Option<Entries<'d>> {
        Some(Entries {
            doc: self.doc,
            entries: self.object()?.iter(),
        })
    }

    /// The elements of an array; none for anything else.
    pub(crate) fn elements_or_none(&self) -> Elements<'d> {
        Elements {
            doc: self.doc,
            items: self.items().unwrap_or_default().iter(),
        }
    }

    /// The entries of an object in the order of their keys; none for anything else.
    pub(crate) fn sorted_entries_or_none(&self) -> SortedEntries<'d> {
        self.sorted_entries().unwrap_or_else(|| {
            SortedEntries(Order::InOrder(Entries {
                doc: self.doc,
                entries: [].iter(),
            }))
        })
    }

    /// The entries of an object in the order of their keys, as a `serde_json::Map` keeps
    /// them; without a copy where the text has them in order.
    pub fn sorted_entries(&self) -> Option<SortedEntries<'d>> {
        let Node::Object { sorted, .. } = *self.node else {
            return None;
        };
        let entries = self.object()?;
        Some(if sorted {
            SortedEntries(Order::InOrder(Entries {
                doc: self.doc,
                entries: entries.iter(),
            }))
        } else {
            SortedEntries(Order::Sorted {
                doc: self.doc,
                entries,
                order: key_order(self.doc, entries).into_iter(),
            })
        })
    }

    /// The same value as a `serde_json::Value`.
    pub fn to_serde(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match *self.node {
            Node::Null => J::Null,
            Node::Bool(b) => J::Bool(b),
            Node::Int(i) => J::from(i),
            Node::Uint(u) => J::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Node::Str(s) => J::String(self.doc.str(s).to_owned()),
            Node::Array { .. } => J::Array(
                self.elements()
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_serde())
                    .collect(),
            ),
            Node::Object { .. } => J::Object(
                self.entries()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.to_owned(), v.to_serde()))
                    .collect(),
            ),
        }
    }
}

/// Objects of more entries than this are searched by halves where their keys are in order.
const SCANNED: usize = 16;

/// A key to look up again and again (a field an expression selects), prepared once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    text: Box<str>,
    head: Head,
}

impl Key {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.into(),
            head: Head::of(text.as_bytes()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::ops::Deref for Key {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// A key's length and first eight bytes as a number: most keys are that short, and comparing
/// an entry's key is then a load and a compare, not a call to compare memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// The key's length, or `u32::MAX` (which no key of a document has) for a longer one.
    len: u32,
    bytes: u64,
    /// The bytes of eight that the key fills.
    mask: u64,
}

impl Head {
    fn of(key: &[u8]) -> Self {
        let n = key.len().min(8);
        let bytes = match key.first_chunk::<8>() {
            Some(chunk) => u64::from_le_bytes(*chunk),
            None => key.iter().rev().fold(0, |h, &b| (h << 8) | u64::from(b)),
        };
        Self {
            len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            bytes,
            mask: u64::MAX.checked_shr(64 - 8 * n as u32).unwrap_or(0),
        }
    }

    /// Whether `found`, a key of `doc`, is `key`, whose head this is. Most keys differ in
    /// length, which is decided here; the rest in [`same`](Self::same).
    #[inline(always)]
    fn is(self, doc: &Document<'_>, found: Str, key: &[u8]) -> bool {
        if found.len == self.len {
            self.same(doc, found, key)
        } else {
            // A key with escapes carries a flag in its length; it is compared as text.
            found.len & Str::ESCAPED != 0 && doc.str(found).as_bytes() == key
        }
    }

    /// Whether `found`, a key of `doc` without escapes and of `key`'s length, is `key`.
    fn same(self, doc: &Document<'_>, found: Str, key: &[u8]) -> bool {
        let text = doc.text.as_bytes();
        let at = found.at as usize;
        match text.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            Some(chunk) => {
                u64::from_le_bytes(*chunk) & self.mask == self.bytes
                    && (key.len() <= 8 || text.get(at + 8..at + key.len()) == key.get(8..))
            }
            None => text.get(at..at + key.len()) == Some(key),
        }
    }
}

/// The entries of an object in the order of their keys.
pub struct SortedEntries<'d>(Order<'d>);

enum Order<'d> {
    InOrder(Entries<'d>),
    /// `entries` through `order`, the places of their keys in key order.
    Sorted {
        doc: &'d Document<'d>,
        entries: &'d [Entry],
        order: std::vec::IntoIter<u32>,
    },
}

impl<'d> Iterator for SortedEntries<'d> {
    type Item = (&'d str, Value<'d>);

    fn next(&mut self) -> Option<(&'d str, Value<'d>)> {
        match &mut self.0 {
            Order::InOrder(e) => e.next(),
            Order::Sorted {
                doc,
                entries,
                order,
            } => {
                let e = entries.get(order.next()? as usize)?;
                Some((doc.str(e.key), Value::new(doc, &e.value)))
            }
        }
    }
}

/// The places of an unsorted object's `entries` in the order of their keys.
#[cold]
#[inline(never)]
pub(crate) fn key_order(doc: &Document<'_>, entries: &[Entry]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..entries.len())
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    order.sort_unstable_by(|&a, &b| {
        let key = |i: u32| entries.get(i as usize).map(|e| doc.str(e.key));
        key(a).cmp(&key(b))
    });
    order
}

/// The elements of an array, in order.
#[derive(Clone)]
pub struct Elements<'d> {
    doc: &'d Document<'d>,
    items: std::slice::Iter<'d, Node>,
}

impl<'d> Iterator for Elements<'d> {
    type Item = Value<'d>;

    fn next(&mut self) -> Option<Value<'d>> {
        self.items.next().map(|node| Value::new(self.doc, node))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl ExactSizeIterator for Elements<'_> {}

/// The entries of an object, in the text's order.
#[derive(Clone)]
pub struct Entries<'d> {
    doc: &'d Document<'d>,
    entries: std::slice::Iter<'d, Entry>,
}

impl<'d> Iterator for Entries<'d> {
    type Item = (&'d str, Value<'d>);

    fn next(&mut self) -> Option<(&'d str, Value<'d>)> {
        self.entries
            .next()
            .map(|e| (self.doc.str(e.key), Value::new(self.doc, &e.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Entries<'_> {}
