//! Cost accounting while an expression runs.
//!
//! Compiled programs call two hidden functions that `compile` inserts: one around every
//! comprehension's range (charged one unit per element, plus one), one around every `+`
//! (charged for the size of what it produced). The interpreter is synchronous, so the
//! remaining budget of the evaluation in progress lives in a thread-local.

use std::cell::Cell;

use cel::{
    ExecutionError, FunctionContext, ResolveResult, Value,
    common::value::{CowVal, Val},
};

/// A native function as the interpreter stores it: it sees the arguments as they are.
type Function = Box<
    dyn for<'c, 'a> Fn(&mut FunctionContext<'c, 'a>) -> Result<CowVal<'c, 'a>, ExecutionError>
        + Send
        + Sync,
>;

use crate::EvalError;

/// Units a whole admission review or delivery may spend, across all its expressions: the
/// million Kubernetes allows one validation expression. This interpreter takes 0.3 to 0.5 µs
/// per unit (one comprehension step) in a release build, so that is half a second at worst.
pub const DEFAULT_BUDGET: u64 = 1_000_000;

/// Bytes of produced strings, lists or bytes charged as one unit.
const BYTES_PER_UNIT: u64 = 16;

pub(crate) const RANGE_FN: &str = "__zen_range__";
pub(crate) const SIZE_FN: &str = "__zen_sized__";

/// What evaluations may still spend; one budget can span several expressions (a policy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    pub(crate) remaining: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            remaining: limit,
        }
    }

    pub fn spent(&self) -> u64 {
        self.limit - self.remaining
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

thread_local! {
    static REMAINING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Stack an evaluation may use. The interpreter recurses once or twice per level of the
/// syntax tree; at `MAX_AST_DEPTH` an unoptimized build needs more than a worker thread's
/// 2 MiB.
pub const EVAL_STACK: usize = 8 * 1024 * 1024;

/// Runs `f` with at least [`EVAL_STACK`] of stack, on a fresh segment if the thread has less.
/// Callers that evaluate many expressions wrap them all in one call: each evaluation checks
/// again but then finds the room.
pub fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(EVAL_STACK, 2 * EVAL_STACK, f)
}

/// Runs `eval` with `budget` as the thread's remaining budget.
pub(crate) fn run(
    budget: &mut Budget,
    eval: impl FnOnce() -> ResolveResult,
) -> Result<Value, EvalError> {
    let outer = REMAINING.replace(Some(budget.remaining));
    let result = with_stack(eval);
    let left = REMAINING.replace(outer).unwrap_or(0);
    budget.remaining = left;
    match result {
        Ok(v) => Ok(v),
        Err(_) if left == 0 => Err(EvalError::Budget {
            limit: budget.limit,
        }),
        Err(e) => Err(EvalError::Execution(e.to_string())),
    }
}

pub(crate) fn charge(units: u64) -> Result<(), ExecutionError> {
    REMAINING.with(|r| match r.get() {
        Some(left) if left >= units => {
            r.set(Some(left - units));
            Ok(())
        }
        // Outside `run` (never, in this crate) nothing is charged.
        None => Ok(()),
        Some(_) => {
            r.set(Some(0));
            Err(ExecutionError::function_error(
                "cost",
                "evaluation exceeded its cost budget",
            ))
        }
    })
}

/// Units for a value of `size` elements (lists, maps) or characters (strings, bytes).
fn size_units(v: &dyn Val) -> u64 {
    let size = v
        .as_sizer()
        .map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
    match v.get_type().name() {
        "string" | "bytes" => string_units(size),
        _ => size,
    }
}

/// Units for `len` bytes of text, produced or scanned.
pub(crate) fn string_units(len: u64) -> u64 {
    len / BYTES_PER_UNIT
}

/// A function that charges for its argument and returns it untouched (moved, not copied:
/// converting values would cost more than the evaluation being charged for).
fn charging(base: u64) -> Function {
    Box::new(move |ftx: &mut FunctionContext| {
        let arg = ftx
            .args
            .pop()
            .ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))?;
        charge(base + size_units(arg.as_ref()))?;
        Ok(arg)
    })
}

/// Registers the charging functions, and `matches` with remembered patterns, on a context.
pub(crate) fn install(ctx: &mut cel::Context<'static, 'static>) {
    // Only compile calls them; a user calling one only pays and gets the argument back.
    let _ = ctx.add_function(RANGE_FN, charging(1));
    let _ = ctx.add_function(SIZE_FN, charging(0));
    let matches: Function = Box::new(crate::regex::matches);
    let _ = ctx.add_function(crate::regex::MATCHES_FN, matches);
}
