//! Compiling with limits. The parser recurses deeply on nested input, so nesting is checked
//! on the text before parsing and parsing runs on a thread with a large stack; the parsed tree's
//! depth is then bounded so evaluation (also recursive) fits any worker thread's stack. The
//! tree is instrumented with the budget's charging calls (see `budget`).

use std::sync::{Arc, LazyLock};

use cel::common::ast::{
    CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, MapExpr, StructExpr, operators,
};

use crate::{
    CompileError, Program,
    budget::{RANGE_FN, SIZE_FN},
    memo::Memo,
    regex::{self, MATCHES_FN},
};

/// Longest expression accepted, as the CRDs bound it.
pub const MAX_EXPRESSION_LENGTH: usize = 5120;
/// Deepest nesting of brackets or chained unary operators accepted in the text. The CEL
/// parser recurses through a dozen grammar rules per level before its own depth check, so
/// deeper input is refused before parsing; real policies stay far below this.
pub const MAX_NESTING: usize = 24;
/// Deepest parsed tree accepted (long operator chains such as `a + b + ...` nest too).
pub const MAX_AST_DEPTH: usize = 64;
/// Stack of the thread that parses, so the parser's recursion has room in any build.
const PARSER_STACK: usize = 16 * 1024 * 1024;
/// Ids of the nodes compile adds, far above the parser's.
const FIRST_ADDED_ID: u64 = 1 << 48;

/// Expressions whose compilation is remembered at once; past it the memory starts afresh.
const CACHE_ENTRIES: usize = 2048;
/// Source text remembered at once, in bytes (a tree is a small multiple of its text).
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Compilation is a pure function of the text, and parsing dominates an admission review
/// (every apply of an Ingestor compiles all its expressions again): results are shared.
static CACHE: LazyLock<Memo<Result<Program, CompileError>>> =
    LazyLock::new(|| Memo::new(CACHE_ENTRIES, CACHE_BYTES));

/// Compiles one expression (or answers from the cache of recent compilations).
pub fn compile(expression: &str) -> Result<Program, CompileError> {
    CACHE.get_or_insert_with(expression, || compile_uncached(expression))
}

/// Whether `expression` compiles, and why not: [`compile`]'s answer without the program.
pub fn check(expression: &str) -> Result<(), CompileError> {
    CACHE.read(
        expression,
        || compile_uncached(expression),
        |compiled| compiled.as_ref().map(|_| ()).map_err(Clone::clone),
    )
}

fn compile_uncached(expression: &str) -> Result<Program, CompileError> {
    if expression.len() > MAX_EXPRESSION_LENGTH {
        return Err(CompileError(format!(
            "{} characters long; at most {MAX_EXPRESSION_LENGTH} are allowed",
            expression.len()
        )));
    }
    let depth = nesting_depth(expression);
    if depth > MAX_NESTING {
        return Err(CompileError(format!(
            "nested {depth} levels deep; at most {MAX_NESTING} are allowed"
        )));
    }
    let expr = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || {
                let program = cel::Program::compile(expression)
                    .map_err(|e| CompileError(e.to_string().replace('\n', " ")))?;
                let mut expr = program.expression().clone();
                let mut next_id = FIRST_ADDED_ID;
                let mut invalid = Vec::new();
                let depth = instrument(&mut expr, &mut next_id, 1, &mut invalid);
                if !invalid.is_empty() {
                    return Err(CompileError(invalid.join("; ")));
                }
                if depth > MAX_AST_DEPTH {
                    return Err(CompileError(format!(
                        "its syntax tree is {depth} levels deep; at most {MAX_AST_DEPTH} are allowed"
                    )));
                }
                Ok(expr)
            })
            .map_err(|e| CompileError(format!("could not start the compiler: {e}")))?
            .join()
            .map_err(|_| CompileError("the compiler failed".into()))?
    })?;
    Ok(Program {
        source: expression.into(),
        direct: crate::direct::lower(&expr).map(Arc::new),
        expr: expr.into(),
    })
}

/// Wraps comprehension ranges and concatenations in charging calls and routes `matches` to
/// the version that remembers patterns; returns the tree's depth. A constant pattern that
/// does not compile is put in `invalid`, so it is refused now rather than at every call.
fn instrument(
    node: &mut IdedExpr,
    next_id: &mut u64,
    depth: usize,
    invalid: &mut Vec<String>,
) -> usize {
    let mut wrap_in = None;
    let below = match &mut node.expr {
        Expr::Call(call) => {
            if call.func_name == "matches" {
                // `text.matches(p)` and `matches(text, p)` both become `f(text, p)`.
                if let Some(target) = call.target.take() {
                    call.args.insert(0, *target);
                }
                call.func_name = MATCHES_FN.to_owned();
                if let [
                    _,
                    IdedExpr {
                        expr: Expr::Literal(LiteralValue::String(p)),
                        ..
                    },
                ] = call.args.as_slice()
                    && let Err(e) = regex::compiled(p.inner())
                {
                    invalid.push(format!("matches: {e}"));
                }
            }
            // `@result + [x]` is a comprehension's own accumulation, already charged per
            // element by its range; wrapping it would also defeat the interpreter's in-place
            // append.
            let accumulates = matches!(call.args.first(), Some(IdedExpr { expr: Expr::Ident(n), .. }) if n.starts_with('@'));
            if call.func_name == operators::ADD && !accumulates {
                wrap_in = Some(SIZE_FN);
            }
            let target = call
                .target
                .as_deref_mut()
                .map_or(0, |t| instrument(t, next_id, depth + 1, invalid));
            call.args
                .iter_mut()
                .map(|a| instrument(a, next_id, depth + 1, invalid))
                .fold(target, usize::max)
        }
        Expr::Comprehension(c) => {
            let d = [
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
                &mut c.iter_range,
            ]
            .into_iter()
            .map(|e| instrument(e, next_id, depth + 1, invalid))
            .fold(0, usize::max);
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = call(RANGE_FN, range, next_id);
            d + 1
        }
        Expr::List(l) => l
            .elements
            .iter_mut()
            .map(|e| instrument(e, next_id, depth + 1, invalid))
            .fold(0, usize::max),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => entries
            .iter_mut()
            .map(|e| match &mut e.expr {
                EntryExpr::MapEntry(entry) => instrument(
                    &mut entry.key,
                    next_id,
                    depth + 1,
                    invalid,
                )
                .max(instrument(&mut entry.value, next_id, depth + 1, invalid)),
                EntryExpr::StructField(f) => instrument(&mut f.value, next_id, depth + 1, invalid),
            })
            .fold(0, usize::max),
        Expr::Select(s) => instrument(&mut s.operand, next_id, depth + 1, invalid),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => depth,
    };
    if let Some(f) = wrap_in {
        let inner = std::mem::take(node);
        *node = call(f, inner, next_id);
        return below + 1;
    }
    below.max(depth)
}

fn call(function: &str, arg: IdedExpr, next_id: &mut u64) -> IdedExpr {
    *next_id += 1;
    IdedExpr {
        id: *next_id,
        expr: Expr::Call(CallExpr {
            func_name: function.to_owned(),
            target: None,
            args: vec![arg],
        }),
    }
}

/// The deepest nesting of `(`, `[`, `{` and runs of `!`/`-`, outside string literals.
fn nesting_depth(expression: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut unary_run = 0usize;
    let mut chars = expression.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Skip the literal, honouring escapes.
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                unary_run = 0;
            }
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth + unary_run);
                unary_run = 0;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                unary_run = 0;
            }
            '!' | '-' => {
                unary_run += 1;
                max = max.max(depth + unary_run);
            }
            c if c.is_whitespace() => {}
            _ => unary_run = 0,
        }
    }
    max
}
