//! Stored objects read in place from their JSON text.
//!
//! A list touches thousands of stored objects but needs only a few fields of each (labels,
//! selectable fields, printer columns) and otherwise copies the stored text through. Building a
//! `serde_json::Value` tree per object was most of a list's time, so objects are read lazily: a
//! level of the document is split into its members only when a lookup first reaches it.

use std::{borrow::Cow, cell::OnceCell, fmt};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An object whose text is not valid JSON (only a corrupt store produces one).
#[derive(Debug, thiserror::Error)]
#[error("stored object is corrupt: {0}")]
pub struct CorruptObject(String);

/// One stored object, with the `resourceVersion` it is served at.
pub struct ObjectView<'a> {
    root: Node<'a>,
    /// Spliced into `metadata` when written: stored text never carries it.
    revision: Option<u64>,
}

impl<'a> ObjectView<'a> {
    /// Reads stored bytes. `revision` is added as `metadata.resourceVersion` when the object is
    /// written out; `None` for text that already carries one.
    pub fn parse(bytes: &'a [u8], revision: Option<u64>) -> Result<Self, CorruptObject> {
        let text = std::str::from_utf8(bytes).map_err(|e| CorruptObject(e.to_string()))?;
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|e| CorruptObject(e.to_string()))?;
        if !raw.get().starts_with('{') {
            return Err(CorruptObject("not a JSON object".into()));
        }
        Ok(Self {
            root: Node::new(raw),
            revision,
        })
    }

    /// The JSON text at a dotted path (`spec.resource.name`), if present.
    pub fn get(&self, path: &str) -> Option<&'a RawValue> {
        self.node(path).map(|n| n.raw)
    }

    /// A string at a dotted path.
    pub fn str(&self, path: &str) -> Option<Cow<'a, str>> {
        self.node(path).and_then(Node::as_str)
    }

    /// The `resourceVersion` the object is served at.
    pub fn resource_version(&self) -> Option<Cow<'a, str>> {
        match self.revision {
            Some(rv) => Some(Cow::Owned(rv.to_string())),
            None => self.str("metadata.resourceVersion"),
        }
    }

    /// A label value.
    pub fn label(&self, key: &str) -> Option<Cow<'a, str>> {
        self.node("metadata.labels")?.child(key)?.as_str()
    }

    fn node(&self, path: &str) -> Option<&Node<'a>> {
        path.trim_start_matches('.')
            .split('.')
            .try_fold(&self.root, |node, part| node.child(part))
    }

    /// The whole object, with its `resourceVersion`.
    pub fn write_object(&self, out: &mut Vec<u8>) {
        let text = self.root.raw.get();
        match self.node("metadata").filter(|_| self.revision.is_some()) {
            Some(meta) => {
                let start = offset_in(text, meta.raw.get());
                out.extend_from_slice(&text.as_bytes()[..start]);
                self.write_metadata(out);
                out.extend_from_slice(&text.as_bytes()[start + meta.raw.get().len()..]);
            }
            None => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// The object's `metadata`, with its `resourceVersion`.
    pub fn write_metadata(&self, out: &mut Vec<u8>) {
        let Some(meta) = self.node("metadata") else {
            out.extend_from_slice(b"{}");
            return;
        };
        let text = meta.raw.get();
        match self.revision {
            Some(rv) if text.starts_with('{') => {
                out.extend_from_slice(b"{\"resourceVersion\":\"");
                out.extend_from_slice(rv.to_string().as_bytes());
                out.push(b'"');
                let rest = text[1..].trim_start();
                if !rest.starts_with('}') {
                    out.push(b',');
                }
                out.extend_from_slice(rest.as_bytes());
            }
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }
}

/// Where `inner`, a slice of `outer`, starts in it.
fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// A JSON value inside a document, split into members the first time a lookup needs them.
struct Node<'a> {
    raw: &'a RawValue,
    /// `None` once split when the value is not an object.
    members: OnceCell<Option<Members<'a>>>,
}

type Members<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

impl<'a> Node<'a> {
    fn new(raw: &'a RawValue) -> Self {
        Self {
            raw,
            members: OnceCell::new(),
        }
    }

    fn child(&self, key: &str) -> Option<&Node<'a>> {
        self.members
            .get_or_init(|| members(self.raw.get()))
            .as_deref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)
    }

    fn as_str(&self) -> Option<Cow<'a, str>> {
        let text = self.raw.get();
        if !text.starts_with('"') {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        Text::deserialize(&mut de).ok().map(|t| t.0)
    }
}

/// An object's members; `None` when the value is not an object.
fn members(text: &str) -> Option<Members<'_>> {
    if !text.starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(MembersVisitor).ok()
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            out.push((key.0, Node::new(value)));
        }
        Ok(out)
    }
}

/// A JSON string, borrowed from the text unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const OBJ: &str = r#"{"kind":"Observation","metadata":{"name":"a\"b","labels":{"app":"web","n":"1"}},"spec":{"resource":{"name":"p"},"count":3}}"#;

    #[test]
    fn lookups_reach_nested_members() {
        let v = ObjectView::parse(OBJ.as_bytes(), Some(7)).unwrap();
        assert_eq!(v.str("metadata.name").as_deref(), Some("a\"b"));
        assert_eq!(v.label("app").as_deref(), Some("web"));
        assert_eq!(v.label("missing"), None);
        assert_eq!(v.str("spec.resource.name").as_deref(), Some("p"));
        assert_eq!(v.get(".spec.count").map(RawValue::get), Some("3"));
        assert_eq!(v.str("spec.count"), None);
        assert!(v.get("spec.count.deeper").is_none());
    }

    #[test]
    fn written_objects_carry_the_revision() {
        let v = ObjectView::parse(OBJ.as_bytes(), Some(7)).unwrap();
        let mut out = Vec::new();
        v.write_object(&mut out);
        let back: Value = serde_json::from_slice(&out).unwrap();
        let mut want: Value = serde_json::from_str(OBJ).unwrap();
        want["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(back, want);

        let empty = br#"{"metadata":{ },"spec":{}}"#;
        let mut out = Vec::new();
        ObjectView::parse(empty, Some(9))
            .unwrap()
            .write_metadata(&mut out);
        assert_eq!(out, br#"{"resourceVersion":"9"}"#);

        let mut out = Vec::new();
        ObjectView::parse(OBJ.as_bytes(), None)
            .unwrap()
            .write_object(&mut out);
        assert_eq!(out, OBJ.as_bytes());
    }

    #[test]
    fn corrupt_text_is_an_error() {
        assert!(ObjectView::parse(b"{\"a\":", None).is_err());
        assert!(ObjectView::parse(b"[1]", None).is_err());
        assert!(ObjectView::parse(&[0xff, 0xfe], None).is_err());
    }
}
