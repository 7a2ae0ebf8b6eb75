//! The parsed (and instrumented) tree rewritten into the evaluator's own, when every node
//! is one it covers; any other expression is left to the interpreter whole.

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators,
};
use zen_json::Key;

use crate::{
    budget::{RANGE_FN, SIZE_FN},
    regex::MATCHES_FN,
};

/// A constant of the expression.
#[derive(Debug)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(Box<str>),
    Duration(chrono::Duration),
    /// A list or map literal of constants, held as JSON so evaluating it builds nothing.
    Json(Box<serde_json::Value>),
}

impl Lit {
    /// The constant as JSON, where JSON reads back as the same CEL value.
    fn json(&self) -> Option<serde_json::Value> {
        use serde_json::Value as Json;
        Some(match self {
            Lit::Null => Json::Null,
            Lit::Bool(b) => Json::Bool(*b),
            Lit::Int(i) => Json::from(*i),
            Lit::Str(s) => Json::String(s.to_string()),
            Lit::Json(j) => (**j).clone(),
            Lit::Uint(_) | Lit::Double(_) | Lit::Duration(_) => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    In,
    Index,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Size,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
    Duration,
    String,
    /// The budget's charge for what a `+` produced.
    Sized,
    /// The budget's charge for a comprehension's range.
    Range,
}

#[derive(Debug)]
pub(crate) enum Node {
    Lit(Lit),
    /// An input variable, or a binding of the evaluation's own (`self`).
    Ident(Box<str>),
    /// A comprehension's variable, resolved when lowering: the binding this many places
    /// below the top of the evaluation's scope, so evaluating it compares no names.
    Local(usize),
    /// `a.b.c`: fields selected one after another, in one step rather than one per field.
    Select(Box<Node>, Box<[Key]>),
    /// Fields selected from an input variable, numbered as a path (see `paths`).
    Path(Box<Path>),
    Has(Box<Node>, Key),
    Not(Box<Node>),
    Neg(Box<Node>),
    NotStrictlyFalse(Box<Node>),
    And(Box<[Node; 2]>),
    Or(Box<[Node; 2]>),
    Cond(Box<[Node; 3]>),
    Binary(Op, Box<[Node; 2]>),
    /// A function's arguments, a method's target first.
    Call(Func, Vec<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Fold(Box<Fold>),
    Quantifier(Box<Quantifier>),
    Append(Box<Append>),
    /// `x == 'text'` or `x != 'text'` (either side): the most common comparison of
    /// policies, decided without visiting the literal or dispatching on both types.
    StrEq(Box<StrEq>),
    /// `x.matches('pattern')` with a constant pattern, compiled once when lowering.
    Matches(Box<(Node, std::sync::Arc<regex::Regex>)>),
}

#[derive(Debug)]
pub(crate) struct StrEq {
    pub(crate) operand: Node,
    pub(crate) text: Box<str>,
    /// `!=`.
    pub(crate) negate: bool,
}

/// `root.fields…` with its number, where there is one.
#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) root: Box<str>,
    pub(crate) fields: Vec<Key>,
    pub(crate) id: Option<u32>,
}

impl Path {
    fn new(root: Box<str>, fields: Vec<Key>) -> Self {
        let id = super::paths::id(&root, &fields);
        Self { root, fields, id }
    }
}

/// A comprehension run step by step (`all`, `exists`, `exists_one`).
#[derive(Debug)]
pub(crate) struct Fold {
    pub(crate) range: Node,
    pub(crate) init: Node,
    pub(crate) cond: Node,
    pub(crate) step: Node,
    pub(crate) result: Node,
    /// For a step `accu && x` (`Some(false)`) or `accu || x` (`Some(true)`), the value that
    /// decides: an error in one element is overruled by a later element giving it, as the
    /// interpreter defers such errors.
    pub(crate) absorbing: Option<bool>,
}

/// `all` (`absorbing` false) and `exists` (true): the body per element until one gives the
/// absorbing value. The body sees the element as a fold's step does, with the accumulator's
/// place below it kept.
#[derive(Debug)]
pub(crate) struct Quantifier {
    pub(crate) range: Node,
    pub(crate) body: Node,
    pub(crate) absorbing: bool,
}

/// A comprehension that only appends to a list (`map`, `filter`).
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) range: Node,
    pub(crate) guard: Option<Node>,
    pub(crate) items: Vec<Node>,
}

/// The tree in the evaluator's form, or `None` where some node is not covered.
pub(crate) fn lower(e: &IdedExpr) -> Option<Node> {
    Lowering::default().lower(e)
}

/// The comprehension variables in scope where lowering is, innermost last: the same stack
/// the evaluator builds, so a variable's place in one is its place in the other.
#[derive(Default)]
struct Lowering<'e> {
    scope: Vec<&'e str>,
}

impl<'e> Lowering<'e> {
    fn lower(&mut self, e: &'e IdedExpr) -> Option<Node> {
        Some(match &e.expr {
            Expr::Literal(l) => Node::Lit(literal(l)?),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(s) => {
                let operand = self.lower(&s.operand)?;
                let field = Key::new(&s.field);
                match operand {
                    _ if s.test => Node::Has(Box::new(operand), field),
                    Node::Select(base, fields) => {
                        let mut fields = fields.into_vec();
                        fields.push(field);
                        Node::Select(base, fields.into())
                    }
                    Node::Path(path) => {
                        let Path {
                            root, mut fields, ..
                        } = *path;
                        fields.push(field);
                        Node::Path(Box::new(Path::new(root, fields)))
                    }
                    Node::Ident(root) => Node::Path(Box::new(Path::new(root, vec![field]))),
                    operand => Node::Select(Box::new(operand), Box::new([field])),
                }
            }
            Expr::List(l) if l.optional_indices.is_empty() => {
                let items: Vec<Node> = self.all(&l.elements)?;
                let constant: Option<Vec<_>> = items.iter().map(constant_of).collect();
                match constant {
                    Some(c) => Node::Lit(Lit::Json(Box::new(serde_json::Value::Array(c)))),
                    None => Node::List(items),
                }
            }
            Expr::Map(m) => {
                let entries: Vec<(Node, Node)> = m
                    .entries
                    .iter()
                    .map(|entry| match &entry.expr {
                        EntryExpr::MapEntry(e) if !e.optional => {
                            Some((self.lower(&e.key)?, self.lower(&e.value)?))
                        }
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                let mut constant = serde_json::Map::new();
                for (k, v) in &entries {
                    let (Node::Lit(Lit::Str(k)), Some(v)) = (k, constant_of(v)) else {
                        return Some(Node::Map(entries));
                    };
                    // A repeated key is the interpreter's to report.
                    if constant.insert(k.to_string(), v).is_some() {
                        return Some(Node::Map(entries));
                    }
                }
                Node::Lit(Lit::Json(Box::new(serde_json::Value::Object(constant))))
            }
            Expr::Call(call) => self::call(call, self)?,
            Expr::Comprehension(c) => comprehension(c, self)?,
            Expr::List(_) | Expr::Struct(_) | Expr::Unspecified => return None,
        })
    }

    /// Lowers `e` with `names` bound on top of the scope.
    fn within(&mut self, names: &[&'e str], e: &'e IdedExpr) -> Option<Node> {
        let depth = self.scope.len();
        self.scope.extend_from_slice(names);
        let out = self.lower(e);
        self.scope.truncate(depth);
        out
    }

    fn ident(&self, name: &str) -> Node {
        match self.scope.iter().rev().position(|n| *n == name) {
            Some(below_top) => Node::Local(below_top),
            None => Node::Ident(name.into()),
        }
    }

    fn all(&mut self, es: &'e [IdedExpr]) -> Option<Vec<Node>> {
        es.iter().map(|e| self.lower(e)).collect()
    }
}

fn constant_of(n: &Node) -> Option<serde_json::Value> {
    match n {
        Node::Lit(l) => l.json(),
        _ => None,
    }
}

fn literal(l: &LiteralValue) -> Option<Lit> {
    Some(match l {
        LiteralValue::Null => Lit::Null,
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::UInt(u) => Lit::Uint(*u.inner()),
        LiteralValue::Double(d) => Lit::Double(*d.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().into()),
        LiteralValue::Bytes(_) => return None,
    })
}

fn call<'e>(call: &'e CallExpr, cx: &mut Lowering<'e>) -> Option<Node> {
    let name = call.func_name.as_str();
    let pair = |cx: &mut Lowering<'e>| -> Option<Box<[Node; 2]>> {
        match call.args.as_slice() {
            [a, b] => Some(Box::new([cx.lower(a)?, cx.lower(b)?])),
            _ => None,
        }
    };
    let one = |cx: &mut Lowering<'e>| -> Option<Box<Node>> {
        match call.args.as_slice() {
            [a] => Some(Box::new(cx.lower(a)?)),
            _ => None,
        }
    };
    let Some(target) = &call.target else {
        let binary = |op, cx: &mut Lowering<'e>| Some(Node::Binary(op, pair(cx)?));
        return match name {
            operators::CONDITIONAL => match call.args.as_slice() {
                [c, t, e] => Some(Node::Cond(Box::new([
                    cx.lower(c)?,
                    cx.lower(t)?,
                    cx.lower(e)?,
                ]))),
                _ => None,
            },
            operators::LOGICAL_AND => Some(Node::And(pair(cx)?)),
            operators::LOGICAL_OR => Some(Node::Or(pair(cx)?)),
            operators::LOGICAL_NOT => Some(Node::Not(one(cx)?)),
            operators::NEGATE => Some(Node::Neg(one(cx)?)),
            operators::NOT_STRICTLY_FALSE => Some(Node::NotStrictlyFalse(one(cx)?)),
            operators::EQUALS | operators::NOT_EQUALS => {
                let negate = name == operators::NOT_EQUALS;
                let [a, b] = *pair(cx)?;
                Some(match (a, b) {
                    (operand, Node::Lit(Lit::Str(text))) | (Node::Lit(Lit::Str(text)), operand) => {
                        Node::StrEq(Box::new(StrEq {
                            operand,
                            text,
                            negate,
                        }))
                    }
                    (a, b) => Node::Binary(if negate { Op::Ne } else { Op::Eq }, Box::new([a, b])),
                })
            }
            operators::LESS => binary(Op::Lt, cx),
            operators::LESS_EQUALS => binary(Op::Le, cx),
            operators::GREATER => binary(Op::Gt, cx),
            operators::GREATER_EQUALS => binary(Op::Ge, cx),
            operators::ADD => binary(Op::Add, cx),
            operators::SUBSTRACT => binary(Op::Sub, cx),
            operators::MULTIPLY => binary(Op::Mul, cx),
            operators::DIVIDE => binary(Op::Div, cx),
            operators::MODULO => binary(Op::Rem, cx),
            operators::IN => binary(Op::In, cx),
            operators::INDEX => binary(Op::Index, cx),
            "duration" => {
                let arg = *one(cx)?;
                // A constant duration is read once, by the interpreter's own parser.
                if let Node::Lit(Lit::Str(s)) = &arg
                    && let Some(d) = super::duration_of(s)
                {
                    return Some(Node::Lit(Lit::Duration(d)));
                }
                Some(Node::Call(Func::Duration, vec![arg]))
            }
            // A pattern that does not compile is left for the interpreter to report.
            MATCHES_FN => match call.args.as_slice() {
                [text, pattern] => {
                    let text = cx.lower(text)?;
                    let pattern = cx.lower(pattern)?;
                    match &pattern {
                        Node::Lit(Lit::Str(p)) if let Ok(re) = crate::regex::compiled(p) => {
                            Some(Node::Matches(Box::new((text, re))))
                        }
                        _ => Some(Node::Call(Func::Matches, vec![text, pattern])),
                    }
                }
                _ => None,
            },
            _ => {
                let func = match (name, call.args.len()) {
                    ("size", 1) => Func::Size,
                    ("string", 1) => Func::String,
                    (SIZE_FN, 1) => Func::Sized,
                    (RANGE_FN, 1) => Func::Range,
                    _ => return None,
                };
                Some(Node::Call(func, cx.all(&call.args)?))
            }
        };
    };
    let func = match (name, call.args.len()) {
        ("size", 0) => Func::Size,
        ("startsWith", 1) => Func::StartsWith,
        ("endsWith", 1) => Func::EndsWith,
        ("contains", 1) => Func::Contains,
        _ => return None,
    };
    let mut all = vec![cx.lower(target)?];
    all.extend(cx.all(&call.args)?);
    Some(Node::Call(func, all))
}

/// A comprehension, whose parts see its variables as the evaluator binds them: a `map` or
/// `filter` its element; `all` and the like their accumulator, with the element above it in
/// the condition and step.
fn comprehension<'e>(c: &'e ComprehensionExpr, cx: &mut Lowering<'e>) -> Option<Node> {
    if c.iter_var2.is_some() {
        return None;
    }
    let range = cx.lower(&c.iter_range)?;
    let (iter, accu) = (c.iter_var.as_str(), c.accu_var.as_str());
    if let Some((guard, items)) = appends(c) {
        return Some(Node::Append(Box::new(Append {
            range,
            guard: match guard {
                Some(g) => Some(cx.within(&[iter], g)?),
                None => None,
            },
            items: items
                .iter()
                .map(|x| cx.within(&[iter], x))
                .collect::<Option<_>>()?,
        })));
    }
    let absorbing = match &c.loop_step.expr {
        Expr::Call(call) if call.target.is_none() && is_ident(call.args.first(), &c.accu_var) => {
            match call.func_name.as_str() {
                operators::LOGICAL_AND => Some(false),
                operators::LOGICAL_OR => Some(true),
                _ => None,
            }
        }
        _ => None,
    };
    let fold = Fold {
        range,
        init: cx.lower(&c.accu_init)?,
        cond: cx.within(&[accu, iter], &c.loop_cond)?,
        step: cx.within(&[accu, iter], &c.loop_step)?,
        result: cx.within(&[accu], &c.result)?,
        absorbing,
    };
    Some(quantifier(Box::new(fold)))
}

/// `all` and `exists` as their macros expand (`true`, looping while the accumulator is not
/// `false`, each step `accu && body`, the accumulator as the result; `exists` the same with
/// `false` and `||`): a [`Quantifier`]; a fold of another shape stays one.
fn quantifier(f: Box<Fold>) -> Node {
    // Within the step and condition, the accumulator is one below the element.
    const ACCU: usize = 1;
    let Some(absorbing) = f.absorbing else {
        return Node::Fold(f);
    };
    let init_ok = matches!(f.init, Node::Lit(Lit::Bool(b)) if b != absorbing);
    let cond_ok = match &f.cond {
        Node::NotStrictlyFalse(x) => match (&**x, absorbing) {
            (Node::Local(ACCU), false) => true,
            (Node::Not(y), true) => matches!(**y, Node::Local(ACCU)),
            _ => false,
        },
        _ => false,
    };
    if !(init_ok && cond_ok && matches!(f.result, Node::Local(0))) {
        return Node::Fold(f);
    }
    let Fold {
        range,
        init,
        cond,
        step,
        result,
        ..
    } = *f;
    match (step, absorbing) {
        (Node::And(pair), false) | (Node::Or(pair), true)
            if matches!(pair[0], Node::Local(ACCU)) =>
        {
            let [_, body] = *pair;
            Node::Quantifier(Box::new(Quantifier {
                range,
                body,
                absorbing,
            }))
        }
        (step, _) => Node::Fold(Box::new(Fold {
            range,
            init,
            cond,
            step,
            result,
            absorbing: Some(absorbing),
        })),
    }
}

fn is_ident(e: Option<&IdedExpr>, name: &str) -> bool {
    matches!(e, Some(IdedExpr { expr: Expr::Ident(n), .. }) if n == name)
}

/// `map` and `filter`: from `[]`, each step `accu + [x]`, or `guard ? accu + [x] : accu`;
/// the guard and the appended elements.
fn appends<'e>(c: &'e ComprehensionExpr) -> Option<(Option<&'e IdedExpr>, &'e [IdedExpr])> {
    let accu = c.accu_var.as_str();
    let starts_empty = matches!(&c.accu_init.expr, Expr::List(l) if l.elements.is_empty());
    let always =
        matches!(c.loop_cond.expr, Expr::Literal(LiteralValue::Boolean(ref b)) if *b.inner());
    if !starts_empty || !always || !is_ident(Some(&c.result), accu) {
        return None;
    }
    let appended = |e: &'e IdedExpr| -> Option<&'e [IdedExpr]> {
        match &e.expr {
            Expr::Call(call) if call.func_name == operators::ADD && call.target.is_none() => {
                match call.args.as_slice() {
                    [
                        a,
                        IdedExpr {
                            expr: Expr::List(l),
                            ..
                        },
                    ] if is_ident(Some(a), accu) && l.optional_indices.is_empty() => {
                        Some(&l.elements)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    };
    match &c.loop_step.expr {
        Expr::Call(call) if call.func_name == operators::CONDITIONAL && call.target.is_none() => {
            match call.args.as_slice() {
                [guard, step, otherwise] if is_ident(Some(otherwise), accu) => {
                    Some((Some(guard), appended(step)?))
                }
                _ => None,
            }
        }
        _ => Some((None, appended(&c.loop_step)?)),
    }
}
