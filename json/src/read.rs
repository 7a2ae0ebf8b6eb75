//! One way to read JSON, whether it is a `serde_json::Value` or a document's, for code that
//! reads both (the schema walk: the API's objects are `serde_json` values, admission's are
//! documents).

use serde_json::Value as Json;

use crate::{Kind, Number, Value};

/// A JSON value read in place.
pub trait ReadJson<'v>: Copy {
    fn kind(self) -> Kind;
    fn as_str(self) -> Option<&'v str>;
    fn as_number(self) -> Option<Number>;
    /// Elements of an array or keys of an object.
    fn size(self) -> Option<usize>;
    /// A field of an object.
    fn get(self, key: &str) -> Option<Self>;
    /// The elements of an array; none for anything else.
    fn elements(self) -> impl Iterator<Item = Self>;
    /// The entries of an object in the order of their keys; none for anything else.
    fn sorted_entries(self) -> impl Iterator<Item = (&'v str, Self)>;
    fn to_serde(self) -> Json;

    /// Whether the value equals `other`, as `serde_json` compares.
    fn equals(self, other: &Json) -> bool {
        match (self.as_str(), other.as_str()) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
            _ => self.to_serde() == *other,
        }
    }
}

impl<'v> ReadJson<'v> for &'v Json {
    fn kind(self) -> Kind {
        match self {
            Json::Null => Kind::Null,
            Json::Bool(_) => Kind::Bool,
            Json::Number(_) => Kind::Number,
            Json::String(_) => Kind::String,
            Json::Array(_) => Kind::Array,
            Json::Object(_) => Kind::Object,
        }
    }

    fn as_str(self) -> Option<&'v str> {
        Json::as_str(self)
    }

    fn as_number(self) -> Option<Number> {
        let Json::Number(n) = self else { return None };
        if let Some(i) = n.as_i64() {
            Some(Number::Int(i))
        } else if let Some(u) = n.as_u64() {
            Some(Number::Uint(u))
        } else {
            n.as_f64().map(Number::Float)
        }
    }

    fn size(self) -> Option<usize> {
        match self {
            Json::Array(a) => Some(a.len()),
            Json::Object(o) => Some(o.len()),
            _ => None,
        }
    }

    fn get(self, key: &str) -> Option<Self> {
        self.as_object()?.get(key)
    }

    fn elements(self) -> impl Iterator<Item = Self> {
        self.as_array().into_iter().flatten()
    }

    fn sorted_entries(self) -> impl Iterator<Item = (&'v str, Self)> {
        self.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
    }

    fn to_serde(self) -> Json {
        self.clone()
    }
}

impl<'v> ReadJson<'v> for Value<'v> {
    fn kind(self) -> Kind {
        Value::kind(&self)
    }

    fn as_str(self) -> Option<&'v str> {
        Value::as_str(&self)
    }

    fn as_number(self) -> Option<Number> {
        Value::as_number(&self)
    }

    fn size(self) -> Option<usize> {
        Value::len(&self)
    }

    fn get(self, key: &str) -> Option<Self> {
        Value::get(&self, key)
    }

    fn elements(self) -> impl Iterator<Item = Self> {
        self.elements_or_none()
    }

    fn sorted_entries(self) -> impl Iterator<Item = (&'v str, Self)> {
        self.sorted_entries_or_none()
    }

    fn to_serde(self) -> Json {
        Value::to_serde(&self)
    }
}
