//! Reading a document in place: a value is the document and a node's place in it.

use std::fmt;

use crate::{Document, Node, parse::Strings};

/// The index past the value at `at` and all it contains.
pub(crate) fn next(nodes: &[Node], at: usize) -> usize {
    match nodes.get(at) {
        Some(Node::Array { end, .. } | Node::Object { end, .. }) => *end as usize,
        _ => at + 1,
    }
}

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

/// A value of a document.
#[derive(Clone, Copy)]
pub struct Value<'d> {
    doc: &'d Document<'d>,
    at: usize,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_serde())
    }
}

impl PartialEq for Value<'_> {
    /// Same document and place: the same value.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.doc, other.doc) && self.at == other.at
    }
}

impl<'d> Value<'d> {
    pub(crate) fn new(doc: &'d Document<'d>, at: usize) -> Self {
        Self { doc, at }
    }

    fn node(&self) -> Node {
        self.doc.nodes.get(self.at).copied().unwrap_or(Node::Null)
    }

    fn strings(&self) -> Strings<'d> {
        self.doc.strings()
    }

    pub fn kind(&self) -> Kind {
        match self.node() {
            Node::Null => Kind::Null,
            Node::Bool(_) => Kind::Bool,
            Node::Int(_) | Node::Uint(_) | Node::Float(_) => Kind::Number,
            Node::Str { .. } | Node::Unescaped { .. } => Kind::String,
            Node::Array { .. } => Kind::Array,
            Node::Object { .. } => Kind::Object,
        }
    }

    pub fn is_null(&self) -> bool {
        self.node() == Node::Null
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.node() {
            Node::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<Number> {
        match self.node() {
            Node::Int(i) => Some(Number::Int(i)),
            Node::Uint(u) => Some(Number::Uint(u)),
            Node::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self.node() {
            Node::Int(i) => Some(i),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self.node() {
            Node::Int(i) => u64::try_from(i).ok(),
            Node::Uint(u) => Some(u),
            _ => None,
        }
    }

    /// As `serde_json::Value::as_f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self.node() {
            Node::Int(i) => Some(i as f64),
            Node::Uint(u) => Some(u as f64),
            Node::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'d str> {
        match self.node() {
            node @ (Node::Str { .. } | Node::Unescaped { .. }) => Some(self.strings().of(node)),
            _ => None,
        }
    }

    /// Elements of an array or distinct keys of an object; `None` for anything else.
    pub fn len(&self) -> Option<usize> {
        match self.node() {
            Node::Array { len, .. } | Node::Object { len, .. } => Some(len as usize),
            _ => None,
        }
    }

    /// An array without elements or an object without keys; `None` for anything else.
    pub fn is_empty(&self) -> Option<bool> {
        self.len().map(|n| n == 0)
    }

    /// How deeply containers nest in this value: 0 for a scalar, 1 for `[]` or `[1]`. Values
    /// a repeated key overrides count too.
    pub fn depth(&self) -> usize {
        let nodes = &self.doc.nodes[..];
        let end = next(nodes, self.at);
        // The ends of the containers the scan is in.
        let mut open: Vec<usize> = Vec::new();
        let mut deepest = 0;
        for (at, node) in nodes.iter().enumerate().take(end).skip(self.at) {
            while open.last().is_some_and(|&e| e <= at) {
                open.pop();
            }
            if let Node::Array { end, .. } | Node::Object { end, .. } = *node {
                open.push(end as usize);
                deepest = deepest.max(open.len());
            }
        }
        deepest
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<Value<'d>> {
        let Node::Object { end, .. } = self.node() else {
            return None;
        };
        let nodes = &self.doc.nodes[..];
        let text = self.doc.text.as_bytes();
        let strings = self.strings();
        let mut found = None;
        let mut at = self.at + 1;
        while at < end as usize {
            // Lengths first: most keys differ in theirs.
            let hit = match nodes[at] {
                Node::Str { at: from, len } => {
                    len as usize == key.len()
                        && text.get(from as usize..from as usize + len as usize)
                            == Some(key.as_bytes())
                }
                node => strings.of(node) == key,
            };
            if hit {
                found = Some(Value::new(self.doc, at + 1));
                if !self.doc.repeats {
                    break;
                }
            }
            at = next(nodes, at + 1);
        }
        found
    }

    /// The element at `index` of an array.
    pub fn index(&self, index: usize) -> Option<Value<'d>> {
        self.elements()?.nth(index)
    }

    /// The elements of an array.
    pub fn elements(&self) -> Option<Elements<'d>> {
        match self.node() {
            Node::Array { len, end } => Some(Elements {
                doc: self.doc,
                at: self.at + 1,
                end: end as usize,
                left: len as usize,
            }),
            _ => None,
        }
    }

    /// The entries of an object in the text's order; a repeated key once, with its last value.
    pub fn entries(&self) -> Option<Entries<'d>> {
        match self.node() {
            Node::Object { len, end, .. } => Some(Entries {
                doc: self.doc,
                at: self.at + 1,
                end: end as usize,
                left: len as usize,
            }),
            _ => None,
        }
    }

    /// The entries of an object in the order of their keys, as a `serde_json::Map` keeps
    /// them; without a copy where the text has them in order.
    pub fn sorted_entries(&self) -> Option<SortedEntries<'d>> {
        let Node::Object { sorted, .. } = self.node() else {
            return None;
        };
        let entries = self.entries()?;
        Some(if sorted {
            SortedEntries::InOrder(entries)
        } else {
            let mut all: Vec<_> = entries.collect();
            all.sort_unstable_by(|a, b| a.0.cmp(b.0));
            SortedEntries::Sorted(all.into_iter())
        })
    }

    /// The same value as a `serde_json::Value`.
    pub fn to_serde(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self.node() {
            Node::Null => J::Null,
            Node::Bool(b) => J::Bool(b),
            Node::Int(i) => J::from(i),
            Node::Uint(u) => J::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            node @ (Node::Str { .. } | Node::Unescaped { .. }) => {
                J::String(self.strings().of(node).to_owned())
            }
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

/// The entries of an object in the order of their keys.
pub enum SortedEntries<'d> {
    InOrder(Entries<'d>),
    Sorted(std::vec::IntoIter<(&'d str, Value<'d>)>),
}

impl<'d> Iterator for SortedEntries<'d> {
    type Item = (&'d str, Value<'d>);

    fn next(&mut self) -> Option<(&'d str, Value<'d>)> {
        match self {
            Self::InOrder(e) => e.next(),
            Self::Sorted(e) => e.next(),
        }
    }
}

/// The elements of an array, in order.
#[derive(Clone)]
pub struct Elements<'d> {
    doc: &'d Document<'d>,
    at: usize,
    end: usize,
    left: usize,
}

impl<'d> Iterator for Elements<'d> {
    type Item = Value<'d>;

    fn next(&mut self) -> Option<Value<'d>> {
        if self.at >= self.end {
            return None;
        }
        let v = Value::new(self.doc, self.at);
        self.at = next(&self.doc.nodes, self.at);
        self.left = self.left.saturating_sub(1);
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Elements<'_> {}

/// The entries of an object, in the text's order.
#[derive(Clone)]
pub struct Entries<'d> {
    doc: &'d Document<'d>,
    at: usize,
    end: usize,
    left: usize,
}

impl<'d> Iterator for Entries<'d> {
    type Item = (&'d str, Value<'d>);

    fn next(&mut self) -> Option<(&'d str, Value<'d>)> {
        let nodes = &self.doc.nodes[..];
        let strings = self.doc.strings();
        while self.at < self.end {
            let key = strings.of(nodes[self.at]);
            let value = Value::new(self.doc, self.at + 1);
            self.at = next(nodes, self.at + 1);
            // With repeats, an entry whose key comes again later is not the one that counts.
            if self.doc.repeats {
                let mut later = self.at;
                let mut again = false;
                while later < self.end {
                    if strings.of(nodes[later]) == key {
                        again = true;
                        break;
                    }
                    later = next(nodes, later + 1);
                }
                if again {
                    continue;
                }
            }
            self.left = self.left.saturating_sub(1);
            return Some((key, value));
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Entries<'_> {}
