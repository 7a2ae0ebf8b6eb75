//! JSON to CEL and back, with Kubernetes' number rules: JSON integers are CEL `int` (not
//! `uint`), so `object.spec.rateLimit.requestsPerSecond <= 1000` compares like with like.

use std::collections::HashMap;

use base64::Engine;
use cel::{
    Value,
    common::{
        types::{
            CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
        },
        value::Val,
    },
    objects::Key,
};
use serde_json::Value as Json;

use crate::EvalError;

/// A JSON value in the interpreter's own representation, built directly: going through
/// `cel::Value` first copied every map twice.
pub fn from_json(v: &Json) -> Box<dyn Val> {
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else if let Some(f) = n.as_f64() {
                Box::new(CelDouble::from(f))
            } else {
                Box::new(CelNull)
            }
        }
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(a) => Box::new(CelList::from(a.iter().map(from_json).collect::<Vec<_>>())),
        Json::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), from_json(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

pub fn to_json(v: &Value) -> Result<Json, EvalError> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| EvalError::Convert(format!("{f} is not a JSON number")))?,
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(&**b)),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        Value::Timestamp(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Duration(d) => Json::String(format_duration(*d)),
        other => {
            return Err(EvalError::Convert(format!(
                "a {} value has no JSON form",
                other.type_of()
            )));
        }
    })
}

/// Go's duration syntax in seconds (`300s`, `1.5s`), which Kubernetes duration fields accept.
pub(crate) fn format_duration(d: chrono::Duration) -> String {
    let nanos = d.num_nanoseconds().unwrap_or(i64::MAX);
    if nanos % 1_000_000_000 == 0 {
        format!("{}s", nanos / 1_000_000_000)
    } else {
        format!("{}s", nanos as f64 / 1e9)
    }
}
