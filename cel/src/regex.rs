//! `matches` with compiled patterns remembered. The standard library compiles the pattern on
//! every call, which made one `name.matches('^[a-z0-9-]+$')` cost more than the rest of a
//! policy set; compile routes every `matches` call here instead. Patterns are bounded in
//! length and compiled size, so a pattern taken from a payload cannot exhaust memory.

use std::sync::{Arc, LazyLock};

use cel::{
    ExecutionError, FunctionContext,
    common::{
        types::{CelBool, CelString},
        value::CowVal,
    },
};

use crate::{
    budget::{charge, string_units},
    memo::Memo,
};

pub(crate) const MATCHES_FN: &str = "__zen_matches__";

/// Longest pattern accepted, as the expressions that carry them are bounded.
pub const MAX_PATTERN_LENGTH: usize = 1024;
/// Compiled size of one pattern (the regex crate's own default is ten times this).
const COMPILED_SIZE_LIMIT: usize = 1 << 20;
/// Patterns remembered at once; past it the memory starts afresh.
const CACHE_ENTRIES: usize = 512;

static CACHE: LazyLock<Memo<Result<Arc<regex::Regex>, String>>> =
    LazyLock::new(|| Memo::new(CACHE_ENTRIES, CACHE_ENTRIES * MAX_PATTERN_LENGTH));

/// Compiles `pattern` with the bounds (or answers from the patterns seen before).
pub(crate) fn compiled(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    if pattern.len() > MAX_PATTERN_LENGTH {
        return Err(format!(
            "the pattern is {} characters long; at most {MAX_PATTERN_LENGTH} are allowed",
            pattern.len()
        ));
    }
    CACHE.get_or_insert_with(pattern, || {
        regex::RegexBuilder::new(pattern)
            .size_limit(COMPILED_SIZE_LIMIT)
            .build()
            .map(Arc::new)
            .map_err(|e| format!("{pattern:?} is not a valid regular expression: {e}"))
    })
}

/// `matches(text, pattern)`, charged for the text it scans.
pub(crate) fn matches<'c, 'a>(
    ftx: &mut FunctionContext<'c, 'a>,
) -> Result<CowVal<'c, 'a>, ExecutionError> {
    let error = |message: String| ExecutionError::function_error("matches", message);
    let [text, pattern] = ftx.args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, ftx.args.len()));
    };
    let (Some(text), Some(pattern)) = (
        text.as_ref().downcast_ref::<CelString>(),
        pattern.as_ref().downcast_ref::<CelString>(),
    ) else {
        return Err(error("matches takes a string and a string pattern".into()));
    };
    charge(1 + string_units(u64::try_from(text.inner().len()).unwrap_or(u64::MAX)))?;
    let re = compiled(pattern.inner()).map_err(error)?;
    Ok(CowVal::owned(CelBool::from(re.is_match(text.inner()))))
}
