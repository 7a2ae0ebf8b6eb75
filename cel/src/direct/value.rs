//! Values of a direct evaluation. Inputs are borrowed, never copied: a JSON string is a
//! `&str` into the document and a JSON array or object stays a reference until an
//! expression builds something new. Every operation here either has the one answer the
//! interpreter would give or returns [`Unknown`].

use std::{cmp::Ordering, rc::Rc};

use serde_json::Value as Json;
use zen_json::Key;

use crate::budget::string_units;

/// "Not decided here": the interpreter evaluates the expression instead. It stands for an
/// error as much as for a case this evaluator does not cover, so it is never an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unknown;

pub(crate) type Outcome<'a> = Result<Val<'a>, Unknown>;

#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(&'a str),
    String(Rc<str>),
    Duration(chrono::Duration),
    /// A JSON array or object of an input (scalars are read into the variants above).
    Json(&'a Json),
    /// An array or object of a document input.
    Doc(zen_json::Value<'a>),
    List(Rc<Vec<Val<'a>>>),
    /// Built by a map literal; keys are scalars, in the literal's order.
    Map(Rc<Vec<(Val<'a>, Val<'a>)>>),
}

impl<'a> Val<'a> {
    /// A JSON value as CEL sees it: integers are `int`, past `i64` `uint`, else `double`.
    pub(crate) fn of(json: &'a Json) -> Self {
        match json {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Val::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Val::Uint(u)
                } else if let Some(f) = n.as_f64() {
                    Val::Double(f)
                } else {
                    Val::Null
                }
            }
            Json::String(s) => Val::Str(s),
            Json::Array(_) | Json::Object(_) => Val::Json(json),
        }
    }

    /// A document's value as CEL sees it, as [`Val::of`] sees JSON.
    pub(crate) fn of_document(value: zen_json::Value<'a>) -> Self {
        use zen_json::{Number, Read};
        match value.read() {
            Read::Null => Val::Null,
            Read::Bool(b) => Val::Bool(b),
            Read::Number(Number::Int(i)) => Val::Int(i),
            Read::Number(Number::Uint(u)) => Val::Uint(u),
            Read::Number(Number::Float(f)) => Val::Double(f),
            Read::Str(s) => Val::Str(s),
            Read::Array | Read::Object => Val::Doc(value),
        }
    }

    pub(crate) fn of_bound(value: crate::Bound<'a>) -> Self {
        match value {
            crate::Bound::Json(json) => Val::of(json),
            crate::Bound::Document(doc) => Val::of_document(doc),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::String(s) => Some(s),
            _ => None,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Val::Int(_) | Val::Uint(_) | Val::Double(_))
    }

    pub(crate) fn is_list(&self) -> bool {
        match self {
            Val::Doc(d) => d.kind() == zen_json::Kind::Array,
            _ => matches!(self, Val::List(_) | Val::Json(Json::Array(_))),
        }
    }

    fn is_map(&self) -> bool {
        match self {
            Val::Doc(d) => d.kind() == zen_json::Kind::Object,
            _ => matches!(self, Val::Map(_) | Val::Json(Json::Object(_))),
        }
    }

    /// `size()`: characters (code points) of a string, elements of a list or map.
    pub(crate) fn size(&self) -> Option<usize> {
        match self {
            Val::Str(_) | Val::String(_) => self.as_str().map(characters),
            Val::Json(Json::Array(a)) => Some(a.len()),
            Val::Json(Json::Object(o)) => Some(o.len()),
            Val::Doc(d) => d.len(),
            Val::List(l) => Some(l.len()),
            Val::Map(m) => Some(m.len()),
            _ => None,
        }
    }

    /// Budget units for this value, as the interpreter's charging calls count them.
    pub(crate) fn units(&self) -> u64 {
        let size = self
            .size()
            .map_or(0, |s| u64::try_from(s).unwrap_or(u64::MAX));
        match self {
            Val::Str(_) | Val::String(_) => string_units(size),
            _ => size,
        }
    }

    /// The elements of a list, or the keys of a map, as a comprehension visits them.
    pub(crate) fn items(&self) -> Result<Items<'a>, Unknown> {
        Ok(match self {
            Val::Json(Json::Array(a)) => Items::Json(a.iter()),
            Val::Json(Json::Object(o)) => Items::Keys(o.keys()),
            Val::Doc(d) => match (d.elements(), d.sorted_entries()) {
                (Some(elements), _) => Items::Doc(elements),
                // In key order, as a `serde_json` map's keys come.
                (None, Some(entries)) => Items::DocKeys(entries),
                (None, None) => return Err(Unknown),
            },
            Val::List(l) => Items::List(l.clone(), 0),
            Val::Map(m) => Items::MapKeys(m.clone(), 0),
            _ => return Err(Unknown),
        })
    }

    /// `a.f`: a present field of a map.
    pub(crate) fn field(&self, name: &Key) -> Outcome<'a> {
        match self {
            Val::Json(Json::Object(o)) => get(o, name).map(Val::of).ok_or(Unknown),
            // Of an array, no field: unknown as well.
            Val::Doc(d) => d.get_key(name).map(Val::of_document).ok_or(Unknown),
            Val::Map(m) => lookup(m, &Val::Str(name))?.ok_or(Unknown),
            _ => Err(Unknown),
        }
    }

    /// `has(a.f)`.
    pub(crate) fn has(&self, name: &Key) -> Outcome<'a> {
        match self {
            Val::Json(Json::Object(o)) => Ok(Val::Bool(get(o, name).is_some())),
            Val::Doc(d) if d.kind() == zen_json::Kind::Object => {
                Ok(Val::Bool(d.get_key(name).is_some()))
            }
            Val::Map(m) => Ok(Val::Bool(lookup(m, &Val::Str(name))?.is_some())),
            _ => Err(Unknown),
        }
    }

    /// `a[i]`.
    pub(crate) fn index(&self, at: &Val<'_>) -> Outcome<'a> {
        match (self, at) {
            (Val::Json(Json::Array(a)), Val::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| a.get(i))
                .map(Val::of)
                .ok_or(Unknown),
            (Val::List(l), Val::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| l.get(i))
                .cloned()
                .ok_or(Unknown),
            (Val::Json(Json::Object(o)), key) => get(o, key.as_str().ok_or(Unknown)?)
                .map(Val::of)
                .ok_or(Unknown),
            (Val::Doc(d), Val::Int(i)) if d.kind() == zen_json::Kind::Array => usize::try_from(*i)
                .ok()
                .and_then(|i| d.index(i))
                .map(Val::of_document)
                .ok_or(Unknown),
            (Val::Doc(d), key) if d.kind() == zen_json::Kind::Object => d
                .get(key.as_str().ok_or(Unknown)?)
                .map(Val::of_document)
                .ok_or(Unknown),
            (Val::Map(m), key) => lookup(m, key)?.ok_or(Unknown),
            _ => Err(Unknown),
        }
    }

    /// `x in container`.
    pub(crate) fn contains(&self, x: &Val<'_>) -> Result<bool, Unknown> {
        match self {
            Val::Json(Json::Object(o)) => Ok(get(o, x.as_str().ok_or(Unknown)?).is_some()),
            Val::Doc(d) if d.kind() == zen_json::Kind::Object => {
                Ok(d.get(x.as_str().ok_or(Unknown)?).is_some())
            }
            Val::Map(m) => Ok(lookup(m, x)?.is_some()),
            v if v.is_list() => {
                let mut undecided = false;
                for item in self.items()? {
                    match equal(&item, x) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(Unknown) => undecided = true,
                    }
                }
                if undecided { Err(Unknown) } else { Ok(false) }
            }
            _ => Err(Unknown),
        }
    }

    /// The JSON form, as the interpreter's results convert.
    pub(crate) fn to_json(&self) -> Result<Json, Unknown> {
        Ok(match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Int(i) => Json::from(*i),
            Val::Uint(u) => Json::from(*u),
            Val::Double(f) => Json::Number(serde_json::Number::from_f64(*f).ok_or(Unknown)?),
            Val::Str(s) => Json::String((*s).to_owned()),
            Val::String(s) => Json::String(s.to_string()),
            Val::Duration(d) => Json::String(crate::convert::format_duration(*d)),
            Val::Json(j) => (*j).clone(),
            Val::Doc(d) => d.to_serde(),
            Val::List(l) => Json::Array(l.iter().map(Val::to_json).collect::<Result<_, _>>()?),
            Val::Map(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m.iter() {
                    let key = match k {
                        Val::Int(i) => i.to_string(),
                        Val::Uint(u) => u.to_string(),
                        Val::Bool(b) => b.to_string(),
                        k => k.as_str().ok_or(Unknown)?.to_owned(),
                    };
                    out.insert(key, v.to_json()?);
                }
                Json::Object(out)
            }
        })
    }
}

/// Objects up to this many fields are scanned rather than searched.
const SCAN: usize = 8;

/// A field of an input object. Most have a few fields, and a scan that compares lengths
/// first costs less than the ordered search, which compares bytes at every step.
pub(crate) fn get<'a>(object: &'a serde_json::Map<String, Json>, name: &str) -> Option<&'a Json> {
    if object.len() <= SCAN {
        object
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    } else {
        object.get(name)
    }
}

/// What a comprehension iterates, without copying it.
pub(crate) enum Items<'a> {
    Json(std::slice::Iter<'a, Json>),
    Keys(serde_json::map::Keys<'a>),
    Doc(zen_json::Elements<'a>),
    DocKeys(zen_json::SortedEntries<'a>),
    List(Rc<Vec<Val<'a>>>, usize),
    MapKeys(Rc<Vec<(Val<'a>, Val<'a>)>>, usize),
}

impl<'a> Iterator for Items<'a> {
    type Item = Val<'a>;

    fn next(&mut self) -> Option<Val<'a>> {
        match self {
            Items::Json(i) => i.next().map(Val::of),
            Items::Keys(k) => k.next().map(|k| Val::Str(k)),
            Items::Doc(e) => e.next().map(Val::of_document),
            Items::DocKeys(k) => k.next().map(|(k, _)| Val::Str(k)),
            Items::List(l, at) => {
                let v = l.get(*at).cloned();
                *at += 1;
                v
            }
            Items::MapKeys(m, at) => {
                let v = m.get(*at).map(|(k, _)| k.clone());
                *at += 1;
                v
            }
        }
    }
}

/// A map literal's value for `key`; keys of different numeric types are left undecided, as
/// [`equal`] leaves them (the interpreter looks them up across types).
fn lookup<'a>(map: &[(Val<'a>, Val<'a>)], key: &Val<'_>) -> Result<Option<Val<'a>>, Unknown> {
    for (k, v) in map {
        if equal(k, key)? {
            return Ok(Some(v.clone()));
        }
    }
    Ok(None)
}

/// `==`: values of different kinds are unequal, except numbers of different types, which
/// the interpreter compares by value and are left to it.
pub(crate) fn equal(a: &Val<'_>, b: &Val<'_>) -> Result<bool, Unknown> {
    Ok(match (a, b) {
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Uint(x), Val::Uint(y)) => x == y,
        (Val::Double(x), Val::Double(y)) => x == y,
        (x, y) if x.is_number() && y.is_number() => return Err(Unknown),
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Duration(x), Val::Duration(y)) => x == y,
        (x, y) if x.as_str().is_some() && y.as_str().is_some() => x.as_str() == y.as_str(),
        (x, y) if x.is_list() && y.is_list() => {
            if x.size() != y.size() {
                return Ok(false);
            }
            for (x, y) in x.items()?.zip(y.items()?) {
                if !equal(&x, &y)? {
                    return Ok(false);
                }
            }
            true
        }
        (x, y) if x.is_map() && y.is_map() => {
            if x.size() != y.size() {
                return Ok(false);
            }
            for k in x.items()? {
                if k.as_str().is_none() {
                    return Err(Unknown);
                }
                let Ok(yv) = y.index(&k) else {
                    return Ok(false);
                };
                if !equal(&x.index(&k)?, &yv)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => false,
    })
}

/// `<` and friends: only values of the same type are ordered here.
pub(crate) fn compare(a: &Val<'_>, b: &Val<'_>) -> Result<Ordering, Unknown> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Uint(x), Val::Uint(y)) => Ok(x.cmp(y)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y).ok_or(Unknown),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Duration(x), Val::Duration(y)) => Ok(x.cmp(y)),
        (x, y) => match (x.as_str(), y.as_str()) {
            (Some(x), Some(y)) => Ok(x.cmp(y)),
            _ => Err(Unknown),
        },
    }
}

/// Code points of a string: the bytes that do not continue a character. A short loop,
/// where the standard library's count is a large body of code for the long strings it is
/// made for, and expressions size strings of a few hundred bytes.
fn characters(s: &str) -> usize {
    s.bytes().filter(|&b| (b as i8) >= -0x40).count()
}
