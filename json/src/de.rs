//! Typed values straight from a document, as `serde_json` deserializes them from a `&Value`:
//! the same visits, the same map order and the same errors.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Error as _, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor, value::BorrowedStrDeserializer,
};
use serde_json::Error;

use crate::{
    Entry, Kind, Node, Number, Value,
    value::{Elements, key_order},
};

impl<'d> Value<'d> {
    /// `T` read from this value, as `serde_json::from_value` would read it from the same JSON.
    pub fn deserialize<T: de::Deserialize<'d>>(self) -> Result<T, Error> {
        T::deserialize(self)
    }

    fn unexpected(&self) -> Unexpected<'d> {
        match self.kind() {
            Kind::Null => Unexpected::Unit,
            Kind::Bool => Unexpected::Bool(self.as_bool().unwrap_or_default()),
            Kind::Number => match self.as_number() {
                Some(Number::Int(i)) if i >= 0 => Unexpected::Unsigned(i.unsigned_abs()),
                Some(Number::Int(i)) => Unexpected::Signed(i),
                Some(Number::Uint(u)) => Unexpected::Unsigned(u),
                Some(Number::Float(f)) => Unexpected::Float(f),
                None => Unexpected::Unit,
            },
            Kind::String => Unexpected::Str(self.as_str().unwrap_or_default()),
            Kind::Array => Unexpected::Seq,
            Kind::Object => Unexpected::Map,
        }
    }

    #[cold]
    #[inline(never)]
    fn invalid_type(&self, expected: &dyn de::Expected) -> Error {
        Error::invalid_type(self.unexpected(), expected)
    }

    fn visit_array<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        let Some(elements) = self.elements() else {
            return Err(self.invalid_type(&visitor));
        };
        let len = elements.len();
        let mut seq = Seq(elements);
        let out = visitor.visit_seq(&mut seq)?;
        if seq.0.len() == 0 {
            Ok(out)
        } else {
            Err(Error::invalid_length(len, &"fewer elements in array"))
        }
    }

    fn visit_object<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        let (Some(entries), Node::Object { sorted, .. }) = (self.object(), *self.node) else {
            return Err(self.invalid_type(&visitor));
        };
        // In the order of the keys, as a `serde_json` map visits them.
        let order = (!sorted).then(|| key_order(self.doc(), entries));
        let mut map = Map {
            value: self,
            entries,
            order,
            next: 0,
            pending: None,
        };
        let out = visitor.visit_map(&mut map)?;
        if map.next == entries.len() {
            Ok(out)
        } else {
            Err(Error::invalid_length(
                entries.len(),
                &"fewer elements in map",
            ))
        }
    }

    fn visit_number<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.as_number() {
            Some(Number::Int(i)) if i >= 0 => visitor.visit_u64(i.unsigned_abs()),
            Some(Number::Int(i)) => visitor.visit_i64(i),
            Some(Number::Uint(u)) => visitor.visit_u64(u),
            Some(Number::Float(f)) => visitor.visit_f64(f),
            None => Err(self.invalid_type(&visitor)),
        }
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
                self.visit_number(visitor)
            }
        )*
    };
}

impl<'d> Deserializer<'d> for Value<'d> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind() {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool => visitor.visit_bool(self.as_bool().unwrap_or_default()),
            Kind::Number => self.visit_number(visitor),
            Kind::String => visitor.visit_borrowed_str(self.as_str().unwrap_or_default()),
            Kind::Array => self.visit_array(visitor),
            Kind::Object => self.visit_object(visitor),
        }
    }

    numbers!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    );

    fn deserialize_option<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        if matches!(self.node, Node::Null) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'d>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (variant, value) = match self.kind() {
            Kind::Object => {
                let mut entries = self.sorted_entries().into_iter().flatten();
                let single = "map with a single key";
                let Some((variant, value)) = entries.next() else {
                    return Err(Error::invalid_value(Unexpected::Map, &single));
                };
                if entries.next().is_some() {
                    return Err(Error::invalid_value(Unexpected::Map, &single));
                }
                (variant, Some(value))
            }
            Kind::String => (self.as_str().unwrap_or_default(), None),
            _ => return Err(self.invalid_type(&"string or map")),
        };
        visitor.visit_enum(Enum { variant, value })
    }

    fn deserialize_newtype_struct<V: Visitor<'d>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_bool<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        match *self.node {
            Node::Str(s) => visitor.visit_borrowed_str(self.doc().str(s)),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind() {
            Kind::String => visitor.visit_borrowed_str(self.as_str().unwrap_or_default()),
            Kind::Array => self.visit_array(visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.invalid_type(&visitor))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'d>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_seq<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_tuple<V: Visitor<'d>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'d>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_array(visitor)
    }

    fn deserialize_map<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_object(visitor)
    }

    fn deserialize_struct<V: Visitor<'d>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Array { .. } => self.visit_array(visitor),
            _ => self.visit_object(visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'d>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl<'d> IntoDeserializer<'d, Error> for Value<'d> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

struct Seq<'d>(Elements<'d>);

impl<'d> SeqAccess<'d> for Seq<'d> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'d>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// An object's entries visited in key order: as they are where the text has them in order,
/// else through `order`.
struct Map<'d> {
    /// The object.
    value: Value<'d>,
    entries: &'d [Entry],
    order: Option<Vec<u32>>,
    next: usize,
    /// The value of the key just given.
    pending: Option<&'d Node>,
}

impl<'d> MapAccess<'d> for Map<'d> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'d>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let at = match &self.order {
            None => self.next,
            Some(order) => order.get(self.next).map_or(usize::MAX, |&i| i as usize),
        };
        let Some(entry) = self.entries.get(at) else {
            return Ok(None);
        };
        self.next += 1;
        self.pending = Some(&entry.value);
        seed.deserialize(BorrowedStrDeserializer::new(
            self.value.doc().str(entry.key),
        ))
        .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'d>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.pending.take() {
            Some(node) => seed.deserialize(Value::new(self.value.doc(), node)),
            None => Err(Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next.min(self.entries.len()))
    }
}

struct Enum<'d> {
    variant: &'d str,
    value: Option<Value<'d>>,
}

impl<'d> EnumAccess<'d> for Enum<'d> {
    type Error = Error;
    type Variant = Variant<'d>;

    fn variant_seed<V: DeserializeSeed<'d>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Variant<'d>), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.variant))?;
        Ok((variant, Variant(self.value)))
    }
}

struct Variant<'d>(Option<Value<'d>>);

impl<'d> VariantAccess<'d> for Variant<'d> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            Some(v) => de::Deserialize::deserialize(v),
            None => Ok(()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'d>>(self, seed: T) -> Result<T::Value, Error> {
        match self.0 {
            Some(v) => seed.deserialize(v),
            None => Err(Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'d>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Some(v) if v.kind() == Kind::Array => {
                if v.len() == Some(0) {
                    visitor.visit_unit()
                } else {
                    v.visit_array(visitor)
                }
            }
            Some(v) => Err(v.invalid_type(&"tuple variant")),
            None => Err(Error::invalid_type(
                Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'d>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Some(v) if v.kind() == Kind::Object => v.visit_object(visitor),
            Some(v) => Err(v.invalid_type(&"struct variant")),
            None => Err(Error::invalid_type(
                Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}
