//! Paths from an input (`object.metadata.name`), numbered the same in every expression, so
//! that the evaluations of one request find each one once (`Variables` keeps what they
//! found): twenty policies that all read `object.spec.sources` walk to it once.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use serde_json::Value as Json;
use zen_json::Key;

use crate::Bound;

/// Distinct paths numbered at most; expressions compiled past it read their paths uncached.
/// Bounds the table whatever expressions are compiled (every applied Ingestor's are).
const MAX_PATHS: usize = 4096;

static IDS: LazyLock<Mutex<HashMap<Box<str>, u32>>> = LazyLock::new(Mutex::default);

/// The number of `root.fields…`, given on first sight; `None` once the table is full.
pub(crate) fn id(root: &str, fields: &[Key]) -> Option<u32> {
    // CEL names hold no NUL, so the joined key is the path and nothing else.
    let mut key = String::from(root);
    for f in fields {
        key.push('\0');
        key.push_str(f);
    }
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = ids.get(key.as_str()) {
        return Some(*id);
    }
    if ids.len() >= MAX_PATHS {
        return None;
    }
    let id = u32::try_from(ids.len()).ok()?;
    ids.insert(key.into(), id);
    Some(id)
}

/// Where `fields` lead from `start`, as selecting them one by one would; `None` for a
/// missing field or a field of something that is not an object, which the evaluation
/// leaves to the interpreter.
pub(crate) fn follow<'v>(start: Bound<'v>, fields: &[Key]) -> Option<Bound<'v>> {
    let mut at = start;
    for field in fields {
        at = match at {
            Bound::Json(Json::Object(o)) => Bound::Json(super::value::get(o, field)?),
            Bound::Document(d) => Bound::Document(d.get_key(field)?),
            Bound::Json(_) => return None,
        };
    }
    Some(at)
}
