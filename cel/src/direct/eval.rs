//! Walks a lowered tree over borrowed inputs, charging the budget as the interpreter's
//! instrumented tree would.

use std::rc::Rc;

use smallvec::SmallVec;

use super::{
    lower::{Append, Fold, Func, Lit, Node, Op, Path, Quantifier, StrEq},
    value::{Items, Outcome, Unknown, Val, compare, equal},
};
use crate::{Bound, Variables, budget::string_units};

/// One evaluation: the inputs, a binding of the caller's over them, the comprehension
/// variables in scope and what is left of the budget.
pub(crate) struct Eval<'a, 'v> {
    inputs: &'a Variables<'v>,
    bound: Option<(&'a str, Val<'a>)>,
    /// Innermost last; lowering resolved each variable to its place here, so no names.
    /// Inline: most evaluations nest a comprehension or two, and then allocate nothing.
    scope: SmallVec<[Val<'a>; 8]>,
    pub(crate) remaining: u64,
}

impl<'a, 'v: 'a> Eval<'a, 'v> {
    pub(crate) fn new(inputs: &'a Variables<'v>, remaining: u64) -> Self {
        Self {
            inputs,
            bound: None,
            scope: SmallVec::new(),
            remaining,
        }
    }

    /// Binds `name` over the inputs for the whole evaluation.
    pub(crate) fn bind(&mut self, name: &'a str, value: Bound<'a>) {
        self.bound = Some((name, Val::of_bound(value)));
    }

    fn charge(&mut self, units: u64) -> Result<(), Unknown> {
        match self.remaining.checked_sub(units) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(Unknown)
            }
        }
    }

    fn ident(&self, name: &str) -> Outcome<'a> {
        if let Some((_, v)) = self.bound.as_ref().filter(|(n, _)| *n == name) {
            return Ok(v.clone());
        }
        self.inputs
            .get(name)
            .map(|input| Val::of_bound(input.bound()))
            .ok_or(Unknown)
    }

    /// Every node's visit runs here; the larger nodes' work is in functions kept out of it
    /// (`#[inline(never)]`), so that the frame each visit sets up stays small.
    pub(crate) fn eval(&mut self, node: &'a Node) -> Outcome<'a> {
        match node {
            Node::Lit(l) => Ok(match l {
                Lit::Null => Val::Null,
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Int(i) => Val::Int(*i),
                Lit::Uint(u) => Val::Uint(*u),
                Lit::Double(d) => Val::Double(*d),
                Lit::Str(s) => Val::Str(s),
                Lit::Duration(d) => Val::Duration(*d),
                Lit::Json(j) => Val::of(j),
            }),
            Node::Ident(name) => self.ident(name),
            Node::Local(below_top) => self
                .scope
                .len()
                .checked_sub(below_top + 1)
                .and_then(|at| self.scope.get(at))
                .cloned()
                .ok_or(Unknown),
            Node::Path(path) => self.path(path),
            Node::Select(operand, fields) => {
                let mut v = self.eval(operand)?;
                for field in fields {
                    v = v.field(field)?;
                }
                Ok(v)
            }
            Node::Has(operand, field) => self.eval(operand)?.has(field),
            Node::Not(x) => match self.eval(x)? {
                Val::Bool(b) => Ok(Val::Bool(!b)),
                _ => Err(Unknown),
            },
            Node::Neg(x) => match self.eval(x)? {
                Val::Int(i) => i.checked_neg().map(Val::Int).ok_or(Unknown),
                Val::Double(d) => Ok(Val::Double(-d)),
                _ => Err(Unknown),
            },
            // An error or a non-boolean counts as true; `Unknown` may be a plain `false`.
            Node::NotStrictlyFalse(x) => match self.eval(x)? {
                Val::Bool(b) => Ok(Val::Bool(b)),
                _ => Ok(Val::Bool(true)),
            },
            Node::And(pair) => self.logical(pair, false),
            Node::Or(pair) => self.logical(pair, true),
            Node::Cond(parts) => match self.eval(&parts[0])? {
                Val::Bool(true) => self.eval(&parts[1]),
                Val::Bool(false) => self.eval(&parts[2]),
                _ => Err(Unknown),
            },
            Node::Binary(op, pair) => {
                let a = self.eval(&pair[0])?;
                let b = self.eval(&pair[1])?;
                binary(*op, a, b)
            }
            Node::Call(func, args) => self.call(*func, args),
            Node::List(items) => self.list(items),
            Node::Map(entries) => self.map(entries),
            Node::Fold(fold) => self.fold(fold),
            Node::Quantifier(q) => self.quantifier(q),
            Node::Append(append) => self.append(append),
            Node::StrEq(e) => self.str_eq(e),
            Node::Matches(m) => self.matches(&m.0, &m.1),
        }
    }

    #[inline(never)]
    fn str_eq(&mut self, e: &'a StrEq) -> Outcome<'a> {
        let v = self.eval(&e.operand)?;
        let same = match v.as_str() {
            Some(s) => s == &*e.text,
            None => equal(&v, &Val::Str(&e.text))?,
        };
        Ok(Val::Bool(same != e.negate))
    }

    #[inline(never)]
    fn matches(&mut self, text: &'a Node, re: &regex::Regex) -> Outcome<'a> {
        let v = self.eval(text)?;
        self.scan(v.as_str().ok_or(Unknown)?, re)
    }

    /// Whether `re` matches `s`, charged for the text it scans.
    fn scan(&mut self, s: &str, re: &regex::Regex) -> Outcome<'a> {
        self.charge(1 + string_units(u64::try_from(s.len()).unwrap_or(u64::MAX)))?;
        Ok(Val::Bool(re.is_match(s)))
    }

    /// `input.a.b`: found once per request where the input allows (see `paths`), else
    /// selected here.
    #[inline(never)]
    fn path(&mut self, path: &'a Path) -> Outcome<'a> {
        let shadowed = self.bound.as_ref().is_some_and(|(n, _)| *n == &*path.root);
        if !shadowed
            && let Some(id) = path.id
            && let Some(found) = self.inputs.path(id, &path.root, &path.fields)
        {
            return found.map(Val::of_bound).ok_or(Unknown);
        }
        let mut v = self.ident(&path.root)?;
        for field in &path.fields {
            v = v.field(field)?;
        }
        Ok(v)
    }

    #[inline(never)]
    fn list(&mut self, items: &'a [Node]) -> Outcome<'a> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.eval(item)?);
        }
        Ok(Val::List(Rc::new(out)))
    }

    #[inline(never)]
    fn map(&mut self, entries: &'a [(Node, Node)]) -> Outcome<'a> {
        let mut out: Vec<(Val<'a>, Val<'a>)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key = self.eval(k)?;
            if !matches!(key, Val::Int(_) | Val::Uint(_) | Val::Bool(_)) && key.as_str().is_none() {
                return Err(Unknown);
            }
            let value = self.eval(v)?;
            // A repeated key, or keys the interpreter may take for one.
            if out.iter().any(|(seen, _)| equal(seen, &key) != Ok(false)) {
                return Err(Unknown);
            }
            out.push((key, value));
        }
        Ok(Val::Map(Rc::new(out)))
    }

    /// `&&` (`absorbing` false) and `||` (true), commutative over errors as in CEL: the
    /// absorbing value on either side decides, whatever the other side is.
    #[inline(never)]
    fn logical(&mut self, pair: &'a [Node; 2], absorbing: bool) -> Outcome<'a> {
        let left = self.eval(&pair[0]);
        if matches!(left, Ok(Val::Bool(b)) if b == absorbing) {
            return Ok(Val::Bool(absorbing));
        }
        match (left, self.eval(&pair[1])?) {
            (_, Val::Bool(b)) if b == absorbing => Ok(Val::Bool(absorbing)),
            (Ok(Val::Bool(_)), Val::Bool(b)) => Ok(Val::Bool(b)),
            _ => Err(Unknown),
        }
    }

    #[inline(never)]
    fn call(&mut self, func: Func, args: &'a [Node]) -> Outcome<'a> {
        // Every function here takes one or two arguments (lowering made sure).
        let first = self.eval(args.first().ok_or(Unknown)?)?;
        let second = match args.get(1) {
            Some(a) => Some(self.eval(a)?),
            None => None,
        };
        let texts = || match (first.as_str(), second.as_ref().and_then(Val::as_str)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(Unknown),
        };
        Ok(match func {
            Func::Size => {
                Val::Int(i64::try_from(first.size().ok_or(Unknown)?).map_err(|_| Unknown)?)
            }
            Func::StartsWith => texts().map(|(a, b)| Val::Bool(a.starts_with(b)))?,
            Func::EndsWith => texts().map(|(a, b)| Val::Bool(a.ends_with(b)))?,
            Func::Contains => texts().map(|(a, b)| Val::Bool(a.contains(b)))?,
            Func::Matches => {
                let (s, pattern) = texts()?;
                let re = crate::regex::compiled(pattern).map_err(|_| Unknown)?;
                self.scan(s, &re)?
            }
            Func::Duration => {
                Val::Duration(super::duration_of(first.as_str().ok_or(Unknown)?).ok_or(Unknown)?)
            }
            Func::String => match first {
                Val::Int(i) => Val::String(i.to_string().into()),
                Val::Uint(u) => Val::String(u.to_string().into()),
                s @ (Val::Str(_) | Val::String(_)) => s,
                _ => return Err(Unknown),
            },
            Func::Sized | Func::Range => {
                let base = u64::from(func == Func::Range);
                self.charge(base + first.units())?;
                first
            }
        })
    }

    #[inline(never)]
    fn fold(&mut self, f: &'a Fold) -> Outcome<'a> {
        let accu = self.eval(&f.init)?;
        let items = self.eval(&f.range)?.items()?;
        let depth = self.scope.len();
        self.scope.push(accu);
        let out = self.fold_items(f, items, depth);
        self.scope.truncate(depth);
        out
    }

    fn fold_items(&mut self, f: &'a Fold, items: Items<'a>, accu_at: usize) -> Outcome<'a> {
        let iter_at = accu_at + 1;
        self.scope.push(Val::Null);
        // A step that failed, pending until a later one overrules it.
        let mut pending = false;
        for item in items {
            match self.eval(&f.cond)? {
                Val::Bool(true) => {}
                Val::Bool(false) => break,
                _ => return Err(Unknown),
            }
            self.scope[iter_at] = item;
            match self.eval(&f.step) {
                Err(Unknown) if f.absorbing.is_some() => pending = true,
                Err(Unknown) => return Err(Unknown),
                Ok(accu) => {
                    let overrules =
                        matches!((&accu, f.absorbing), (Val::Bool(b), Some(a)) if *b == a);
                    if !pending || overrules {
                        pending = false;
                        self.scope[accu_at] = accu;
                    }
                }
            }
        }
        if pending {
            return Err(Unknown);
        }
        self.scope.truncate(iter_at);
        self.eval(&f.result)
    }

    /// As [`fold`](Self::fold) runs the macro's expansion: an element whose body gives the
    /// absorbing value decides; an error (or a non-boolean) in another is the answer only
    /// when none does.
    #[inline(never)]
    fn quantifier(&mut self, q: &'a Quantifier) -> Outcome<'a> {
        let items = self.eval(&q.range)?.items()?;
        let depth = self.scope.len();
        self.scope.push(Val::Bool(!q.absorbing));
        self.scope.push(Val::Null);
        let mut pending = false;
        let mut decided = false;
        for item in items {
            self.scope[depth + 1] = item;
            match self.eval(&q.body) {
                Ok(Val::Bool(b)) if b == q.absorbing => {
                    decided = true;
                    break;
                }
                Ok(Val::Bool(_)) => {}
                Ok(_) | Err(Unknown) => pending = true,
            }
        }
        self.scope.truncate(depth);
        match (decided, pending) {
            (true, _) => Ok(Val::Bool(q.absorbing)),
            (false, true) => Err(Unknown),
            (false, false) => Ok(Val::Bool(!q.absorbing)),
        }
    }

    #[inline(never)]
    fn append(&mut self, a: &'a Append) -> Outcome<'a> {
        let range = self.eval(&a.range)?;
        let items = range.items()?;
        let depth = self.scope.len();
        self.scope.push(Val::Null);
        let mut out = Vec::with_capacity(range.size().unwrap_or(0));
        let result = (|| {
            for item in items {
                self.scope[depth] = item;
                if let Some(guard) = &a.guard {
                    match self.eval(guard)? {
                        Val::Bool(true) => {}
                        Val::Bool(false) => continue,
                        _ => return Err(Unknown),
                    }
                }
                for x in &a.items {
                    out.push(self.eval(x)?);
                }
            }
            Ok(())
        })();
        self.scope.truncate(depth);
        result.map(|()| Val::List(Rc::new(out)))
    }
}

fn binary<'a>(op: Op, a: Val<'a>, b: Val<'a>) -> Outcome<'a> {
    use std::cmp::Ordering::*;
    Ok(match op {
        Op::Eq => Val::Bool(equal(&a, &b)?),
        Op::Ne => Val::Bool(!equal(&a, &b)?),
        Op::Lt => Val::Bool(compare(&a, &b)? == Less),
        Op::Le => Val::Bool(compare(&a, &b)? != Greater),
        Op::Gt => Val::Bool(compare(&a, &b)? == Greater),
        Op::Ge => Val::Bool(compare(&a, &b)? != Less),
        Op::In => Val::Bool(b.contains(&a)?),
        Op::Index => a.index(&b)?,
        Op::Add => match (&a, &b) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_add(*y).ok_or(Unknown)?),
            (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_add(*y).ok_or(Unknown)?),
            (Val::Double(x), Val::Double(y)) => Val::Double(x + y),
            _ => match (a.as_str(), b.as_str()) {
                (Some(x), Some(y)) => {
                    let mut joined = String::with_capacity(x.len() + y.len());
                    joined.push_str(x);
                    joined.push_str(y);
                    Val::String(joined.into())
                }
                _ => {
                    if !a.is_list() || !b.is_list() {
                        return Err(Unknown);
                    }
                    let mut out: Vec<Val<'a>> = a.items()?.collect();
                    out.extend(b.items()?);
                    Val::List(Rc::new(out))
                }
            },
        },
        Op::Sub => match (a, b) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_sub(y).ok_or(Unknown)?),
            (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_sub(y).ok_or(Unknown)?),
            (Val::Double(x), Val::Double(y)) => Val::Double(x - y),
            _ => return Err(Unknown),
        },
        Op::Mul => match (a, b) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_mul(y).ok_or(Unknown)?),
            (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_mul(y).ok_or(Unknown)?),
            (Val::Double(x), Val::Double(y)) => Val::Double(x * y),
            _ => return Err(Unknown),
        },
        Op::Div => match (a, b) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_div(y).ok_or(Unknown)?),
            (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_div(y).ok_or(Unknown)?),
            (Val::Double(x), Val::Double(y)) if y != 0.0 => Val::Double(x / y),
            _ => return Err(Unknown),
        },
        Op::Rem => match (a, b) {
            (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_rem(y).ok_or(Unknown)?),
            (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_rem(y).ok_or(Unknown)?),
            _ => return Err(Unknown),
        },
    })
}
