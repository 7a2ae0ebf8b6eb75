//! Evaluation straight over the JSON inputs. The interpreter needs every input converted
//! into its own boxed values first and copies maps on member access, which made it most of
//! an admission review's cost. Expressions built only from what this evaluator covers (field
//! access, `has`, logic, comparisons, arithmetic, string functions, literals and the
//! comprehension macros) run here over borrowed inputs; anything else, and any evaluation
//! that does not reach a plain answer (an error, a mixed-type comparison), goes to the
//! interpreter, which stays the reference for every result and every error message.

mod eval;
mod lower;
pub(crate) mod paths;
mod value;

use std::sync::LazyLock;

pub(crate) use lower::{Node, lower};
pub(crate) use value::{Unknown, Val};

use crate::{Bound, ENV, Variables, memo::Memo};

/// Evaluates `node` over `vars` (with `extra` bound on top) from `remaining` units; the
/// finished result and the units left, or `None` to leave the evaluation to the interpreter.
pub(crate) fn evaluate<'a, 'v: 'a, T>(
    node: &'a Node,
    vars: &'a Variables<'v>,
    extra: Option<(&'a str, Bound<'a>)>,
    remaining: u64,
    finish: impl FnOnce(Val<'a>) -> Result<T, Unknown>,
) -> Option<(T, u64)> {
    let mut eval = eval::Eval::new(vars, remaining);
    if let Some((name, value)) = extra {
        eval.bind(name, value);
    }
    let out = eval.eval(node).and_then(finish).ok()?;
    Some((out, eval.remaining))
}

/// Longest duration text remembered; longer ones are left to the interpreter.
const MAX_DURATION_TEXT: usize = 64;

static DURATIONS: LazyLock<Memo<Option<chrono::Duration>>> =
    LazyLock::new(|| Memo::new(1024, 1024 * MAX_DURATION_TEXT));

static DURATION: LazyLock<Option<cel::Program>> =
    LazyLock::new(|| cel::Program::compile("duration(text)").ok());

/// `duration(text)` as the interpreter reads it (its parser is not public), remembered.
pub(crate) fn duration_of(text: &str) -> Option<chrono::Duration> {
    if text.len() > MAX_DURATION_TEXT {
        return None;
    }
    DURATIONS.get_or_insert_with(text, || {
        let mut ctx = cel::Context::with_env(ENV.clone());
        ctx.add_variable_from_value("text", text);
        match DURATION.as_ref()?.execute(&ctx) {
            Ok(cel::Value::Duration(d)) => Some(d),
            _ => None,
        }
    })
}
