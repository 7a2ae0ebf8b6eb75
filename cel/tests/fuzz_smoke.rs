//! Bounded, deterministic fuzzing of compile and evaluate on stable Rust (the cargo-fuzz target
//! `fuzz/fuzz_targets/cel.rs` needs nightly).
//!
//! Two kinds of input, from a fixed pseudo-random sequence:
//!
//! - well-typed expressions from a small grammar (int, bool, string and list expressions:
//!   literals, arithmetic, comparisons, `&&`/`||`/`!`, `?:`, `in`, `size`, string functions,
//!   `all`/`exists`/`exists_one`/`map`/`filter`, `+` on strings and lists), each generated with
//!   the value it must evaluate to, computed here (an integer overflow or a division by zero
//!   is an error; `&&` and `||` absorb an error on either side as CEL says). They must compile
//!   and evaluate to exactly that value.
//! - anything: the same grammar widened with maps, doubles, uints, bytes, durations,
//!   timestamps, regexes, optionals, nested comprehensions over a large list, long `+` chains
//!   and deep brackets, then mutated as text (characters and tokens inserted, deleted,
//!   duplicated, swapped, truncated). Every one must compile or be refused with a message, and
//!   every evaluation must end in a value that converts to JSON or one of the documented errors
//!   (a budget error spending exactly the budget); never a panic, never unbounded work.
//!
//! `ZEN_FUZZ_SEED` and `ZEN_FUZZ_ITERATIONS` change the sequence for longer local runs.

use serde_json::{Value, json};
use zen_cel::{Budget, EvalError, MAX_EXPRESSION_LENGTH, Variables, compile};
use zen_json::Document;

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the expressions read.
fn payload() -> Value {
    json!({
        "n": 7,
        "s": "zen",
        "l": [3, 1, 4, 1, 5],
        "e": [],
        "m": {"a": 1, "b": "x", "c": [1, 2]},
        "big": (0..2000).collect::<Vec<i64>>(),
        "f": 1.5,
        "t": "2026-11-22T13:47:16Z",
    })
}

const N: i64 = 7;
const S: &str = "zen";
const L: [i64; 5] = [3, 1, 4, 1, 5];

fn variables() -> Variables<'static> {
    let mut v = Variables::new();
    v.set_owned("payload", payload());
    v
}

/// The payload's text, read as a document, as webhooks' bodies are.
fn payload_text() -> String {
    payload().to_string()
}

fn document_variables<'a>(doc: &'a Document<'a>) -> Variables<'a> {
    let mut v = Variables::new();
    v.set_document("payload", doc.root());
    v
}

// ---------------------------------------------------------------------------------------
// Well-typed expressions and the values they must have

/// A value the generator knows an expression has; `Err` when evaluation must fail.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Int(i64),
    Bool(bool),
    Str(String),
    List(Vec<i64>),
    Err,
}

impl V {
    fn json(&self) -> Option<Value> {
        Some(match self {
            V::Int(i) => json!(i),
            V::Bool(b) => json!(b),
            V::Str(s) => json!(s),
            V::List(l) => json!(l),
            V::Err => return None,
        })
    }
}

type Typed = (String, V);

/// Comprehension variables are named by depth, so nested ones never shadow each other.
fn var(d: usize) -> String {
    format!("v{d}")
}

fn int_literal(rng: &mut Rng) -> Typed {
    let k = match rng.below(10) {
        0 => i64::MAX,
        1 => -i64::MAX,
        2 => 0,
        _ => rng.int(-50, 50),
    };
    if k < 0 {
        (format!("({k})"), V::Int(k))
    } else {
        (k.to_string(), V::Int(k))
    }
}

fn arith(op: &str, a: &V, b: &V) -> V {
    let (V::Int(a), V::Int(b)) = (a, b) else {
        return V::Err;
    };
    let r = match op {
        "+" => a.checked_add(*b),
        "-" => a.checked_sub(*b),
        "*" => a.checked_mul(*b),
        "/" => a.checked_div(*b),
        _ => a.checked_rem(*b),
    };
    r.map_or(V::Err, V::Int)
}

fn gen_int(rng: &mut Rng, d: usize) -> Typed {
    if d == 0 || rng.chance(25) {
        return match rng.below(6) {
            0 => ("payload.n".into(), V::Int(N)),
            1 => ("size(payload.l)".into(), V::Int(L.len() as i64)),
            2 => {
                let i = rng.below(L.len());
                (format!("payload.l[{i}]"), V::Int(L[i]))
            }
            3 => ("payload.s.size()".into(), V::Int(S.len() as i64)),
            _ => int_literal(rng),
        };
    }
    match rng.below(7) {
        0..=2 => {
            let op = *rng.pick(&["+", "-", "*", "/", "%"]);
            let (ea, a) = gen_int(rng, d - 1);
            let (eb, b) = gen_int(rng, d - 1);
            (format!("({ea} {op} {eb})"), arith(op, &a, &b))
        }
        3 => ternary(rng, d, gen_int),
        4 => {
            let (e, l) = gen_list(rng, d - 1);
            let v = match l {
                V::List(l) => V::Int(l.len() as i64),
                _ => V::Err,
            };
            if rng.chance(50) {
                (format!("size({e})"), v)
            } else {
                (format!("{e}.size()"), v)
            }
        }
        5 => {
            let (e, s) = gen_str(rng, d - 1);
            let v = match s {
                V::Str(s) => V::Int(s.chars().count() as i64),
                _ => V::Err,
            };
            (format!("{e}.size()"), v)
        }
        _ => {
            // An element of a list literal.
            let n = 1 + rng.below(3);
            let items: Vec<Typed> = (0..n).map(|_| gen_int(rng, d - 1)).collect();
            let i = rng.below(n);
            let v = if items.iter().any(|(_, v)| *v == V::Err) {
                V::Err
            } else {
                items[i].1.clone()
            };
            let text: Vec<&str> = items.iter().map(|(e, _)| e.as_str()).collect();
            (format!("[{}][{i}]", text.join(", ")), v)
        }
    }
}

fn ternary(rng: &mut Rng, d: usize, branch: fn(&mut Rng, usize) -> Typed) -> Typed {
    let (ec, c) = gen_bool(rng, d - 1);
    let (ea, a) = branch(rng, d - 1);
    let (eb, b) = branch(rng, d - 1);
    let v = match c {
        V::Bool(true) => a,
        V::Bool(false) => b,
        _ => V::Err,
    };
    (format!("({ec} ? {ea} : {eb})"), v)
}

fn logic(and: bool, a: &V, b: &V) -> V {
    let absorbing = !and;
    if *a == V::Bool(absorbing) || *b == V::Bool(absorbing) {
        return V::Bool(absorbing);
    }
    match (a, b) {
        (V::Bool(_), V::Bool(_)) => V::Bool(!absorbing),
        _ => V::Err,
    }
}

fn gen_bool(rng: &mut Rng, d: usize) -> Typed {
    if d == 0 || rng.chance(20) {
        return match rng.below(5) {
            0 => ("true".into(), V::Bool(true)),
            1 => ("false".into(), V::Bool(false)),
            2 => ("has(payload.m.a)".into(), V::Bool(true)),
            3 => ("has(payload.m.zz)".into(), V::Bool(false)),
            _ => ("(payload.s == 'zen')".into(), V::Bool(true)),
        };
    }
    match rng.below(9) {
        0 | 1 => {
            let op = *rng.pick(&["<", "<=", ">", ">=", "==", "!="]);
            let (ea, a) = gen_int(rng, d - 1);
            let (eb, b) = gen_int(rng, d - 1);
            let v = match (a, b) {
                (V::Int(a), V::Int(b)) => V::Bool(match op {
                    "<" => a < b,
                    "<=" => a <= b,
                    ">" => a > b,
                    ">=" => a >= b,
                    "==" => a == b,
                    _ => a != b,
                }),
                _ => V::Err,
            };
            (format!("({ea} {op} {eb})"), v)
        }
        2 | 3 => {
            let and = rng.chance(50);
            let (ea, a) = gen_bool(rng, d - 1);
            let (eb, b) = gen_bool(rng, d - 1);
            let op = if and { "&&" } else { "||" };
            (format!("({ea} {op} {eb})"), logic(and, &a, &b))
        }
        4 => {
            let (e, a) = gen_bool(rng, d - 1);
            let v = match a {
                V::Bool(b) => V::Bool(!b),
                _ => V::Err,
            };
            (format!("!({e})"), v)
        }
        5 => ternary(rng, d, gen_bool),
        6 => {
            let (ex, x) = gen_int(rng, d - 1);
            let (el, l) = gen_list(rng, d - 1);
            let v = match (x, l) {
                (V::Int(x), V::List(l)) => V::Bool(l.contains(&x)),
                _ => V::Err,
            };
            (format!("({ex} in {el})"), v)
        }
        7 => {
            let (el, l) = gen_list(rng, d - 1);
            let k = rng.int(-3, 6);
            let x = var(d);
            let macro_name = *rng.pick(&["all", "exists", "exists_one"]);
            let f = |l: &[i64]| match macro_name {
                "all" => l.iter().all(|x| *x > k),
                "exists" => l.iter().any(|x| *x > k),
                _ => l.iter().filter(|x| **x > k).count() == 1,
            };
            let v = match l {
                V::List(l) => V::Bool(f(&l)),
                _ => V::Err,
            };
            (format!("{el}.{macro_name}({x}, {x} > {k})"), v)
        }
        _ => {
            let (ea, a) = gen_str(rng, d - 1);
            let (eb, b) = gen_str(rng, d - 1);
            let f = *rng.pick(&["contains", "startsWith", "endsWith", "=="]);
            let v = match (a, b) {
                (V::Str(a), V::Str(b)) => V::Bool(match f {
                    "contains" => a.contains(&b),
                    "startsWith" => a.starts_with(&b),
                    "endsWith" => a.ends_with(&b),
                    _ => a == b,
                }),
                _ => V::Err,
            };
            if f == "==" {
                (format!("({ea} == {eb})"), v)
            } else {
                (format!("{ea}.{f}({eb})"), v)
            }
        }
    }
}

fn gen_str(rng: &mut Rng, d: usize) -> Typed {
    if d == 0 || rng.chance(30) {
        return match rng.below(3) {
            0 => ("payload.s".into(), V::Str(S.into())),
            _ => {
                let n = rng.below(5);
                let s: String = (0..n)
                    .map(|_| *rng.pick(&['a', 'b', 'z', 'e', 'n']))
                    .collect();
                let quoted = if rng.chance(50) {
                    format!("'{s}'")
                } else {
                    format!("\"{s}\"")
                };
                (quoted, V::Str(s))
            }
        };
    }
    match rng.below(3) {
        0 => {
            let (ea, a) = gen_str(rng, d - 1);
            let (eb, b) = gen_str(rng, d - 1);
            let v = match (a, b) {
                (V::Str(a), V::Str(b)) => V::Str(a + &b),
                _ => V::Err,
            };
            (format!("({ea} + {eb})"), v)
        }
        1 => ternary(rng, d, gen_str),
        _ => {
            let (e, i) = gen_int(rng, d - 1);
            let v = match i {
                V::Int(i) => V::Str(i.to_string()),
                _ => V::Err,
            };
            (format!("string({e})"), v)
        }
    }
}

fn gen_list(rng: &mut Rng, d: usize) -> Typed {
    if d == 0 || rng.chance(25) {
        return match rng.below(3) {
            0 => ("payload.l".into(), V::List(L.to_vec())),
            1 => ("payload.e".into(), V::List(vec![])),
            _ => {
                let items: Vec<i64> = (0..rng.below(5)).map(|_| rng.int(-5, 9)).collect();
                let text: Vec<String> = items.iter().map(i64::to_string).collect();
                (format!("[{}]", text.join(", ")), V::List(items))
            }
        };
    }
    match rng.below(5) {
        0 => {
            let (ea, a) = gen_list(rng, d - 1);
            let (eb, b) = gen_list(rng, d - 1);
            let v = match (a, b) {
                (V::List(mut a), V::List(b)) => {
                    a.extend(b);
                    V::List(a)
                }
                _ => V::Err,
            };
            (format!("({ea} + {eb})"), v)
        }
        1 => ternary(rng, d, gen_list),
        2 => {
            let (el, l) = gen_list(rng, d - 1);
            let k = rng.int(-3, 3);
            let x = var(d);
            let v = match l {
                V::List(l) => l
                    .iter()
                    .map(|x| x.checked_mul(k))
                    .collect::<Option<Vec<_>>>()
                    .map_or(V::Err, V::List),
                _ => V::Err,
            };
            (format!("{el}.map({x}, {x} * {k})"), v)
        }
        3 => {
            let (el, l) = gen_list(rng, d - 1);
            let k = rng.int(-3, 6);
            let x = var(d);
            let v = match l {
                V::List(l) => V::List(l.into_iter().filter(|x| *x > k).collect()),
                _ => V::Err,
            };
            (format!("{el}.filter({x}, {x} > {k})"), v)
        }
        _ => {
            let n = rng.below(4);
            let items: Vec<Typed> = (0..n).map(|_| gen_int(rng, d - 1)).collect();
            let v = items
                .iter()
                .map(|(_, v)| match v {
                    V::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map_or(V::Err, V::List);
            let text: Vec<&str> = items.iter().map(|(e, _)| e.as_str()).collect();
            (format!("[{}]", text.join(", ")), v)
        }
    }
}

fn gen_typed(rng: &mut Rng) -> Typed {
    let d = 1 + rng.below(4);
    match rng.below(4) {
        0 => gen_int(rng, d),
        1 => gen_bool(rng, d),
        2 => gen_str(rng, d),
        _ => gen_list(rng, d),
    }
}

#[test]
fn generated_expressions_evaluate_to_their_values() {
    let seed = env_u64("ZEN_FUZZ_SEED", 0xce1_0001);
    let iterations = env_u64("ZEN_FUZZ_ITERATIONS", 1500);
    let mut rng = Rng::new(seed);
    let vars = variables();
    let text = payload_text();
    let doc = Document::parse(&text).expect("the payload is JSON");
    let doc_vars = document_variables(&doc);
    let (mut values, mut errors, mut direct) = (0, 0, 0);
    for i in 0..iterations {
        let (expr, want) = gen_typed(&mut rng);
        let what = format!("iteration {i} of seed {seed}: {expr}");
        let program = compile(&expr).unwrap_or_else(|e| panic!("{what}: does not compile: {e}"));
        direct += usize::from(program.is_direct());
        let mut budget = Budget::default();
        let got = program.evaluate(&vars, &mut budget);
        // Read from a document, the same value for the same charge.
        let mut doc_budget = Budget::default();
        assert_eq!(
            program.evaluate(&doc_vars, &mut doc_budget),
            got,
            "{what}: document"
        );
        assert_eq!(doc_budget.spent(), budget.spent(), "{what}: document");
        match (want.json(), &got) {
            (Some(want), Ok(got)) => {
                assert_eq!(*got, want, "{what}");
                values += 1;
            }
            (None, Err(EvalError::Execution(m))) => {
                assert!(!m.is_empty(), "{what}");
                errors += 1;
            }
            (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
        }
        if let V::Bool(b) = want {
            assert_eq!(
                program.evaluate_bool(&vars, &mut Budget::default()),
                Ok(b),
                "{what}"
            );
        }
        // An extra binding changes nothing the expression does not read.
        assert_eq!(
            program.evaluate_with(&vars, "self", &json!(1), &mut Budget::default()),
            got,
            "{what}"
        );
    }
    eprintln!(
        "seed {seed}: {values} values, {errors} expected errors, {direct} evaluated directly"
    );
    assert!(values > iterations as usize / 2, "{values} values");
    // The grammar is what policies are made of: all of it runs without the interpreter.
    assert_eq!(direct, iterations as usize, "evaluated directly");
    assert!(errors > 0, "no overflow or division by zero generated");
}

// ---------------------------------------------------------------------------------------
// Anything, and mutations of it

fn gen_any(rng: &mut Rng, d: usize) -> String {
    if d == 0 || rng.chance(15) {
        return match rng.below(26) {
            0 => "payload".into(),
            1 => "payload.big".into(),
            2 => "payload.m".into(),
            3 => "payload.missing".into(),
            4 => "payload.f".into(),
            5 => "self".into(),
            6 => "null".into(),
            7 => "1.5e300".into(),
            8 => "18446744073709551615u".into(),
            9 => "9223372036854775807".into(),
            10 => "-9223372036854775808".into(),
            11 => "b'\\xff\\x00'".into(),
            12 => "r'\\d+'".into(),
            13 => "'''multi\nline'''".into(),
            14 => "'\\u00e9\\U0001F600'".into(),
            15 => "duration('1h30m')".into(),
            16 => "timestamp(payload.t)".into(),
            17 => "timestamp('9999-12-31T23:59:59Z')".into(),
            18 => "duration('-9223372036s')".into(),
            19 => "type(payload.n)".into(),
            20 => "dyn(payload.s)".into(),
            21 => "optional.of(1)".into(),
            22 => format!("'{}'", "x".repeat(rng.below(3000))),
            23 => "[]".into(),
            24 => "{}".into(),
            _ => gen_typed(rng).0,
        };
    }
    let a = gen_any(rng, d - 1);
    let b = gen_any(rng, d - 1);
    let x = var(d);
    match rng.below(22) {
        0 => format!("({a} {} {b})", rng.pick(&["+", "-", "*", "/", "%"])),
        1 => format!(
            "({a} {} {b})",
            rng.pick(&["==", "!=", "<", "<=", ">", ">="])
        ),
        2 => format!("({a} {} {b})", rng.pick(&["&&", "||", "in"])),
        3 => format!("({} ? {a} : {b})", gen_any(rng, d - 1)),
        4 => format!("[{a}, {b}]"),
        5 => format!("{{{a}: {b}}}"),
        6 => format!(
            "{a}.{}({x}, {b})",
            rng.pick(&["all", "exists", "exists_one", "map", "filter"])
        ),
        7 => format!("{a}.map({x}, {b}, {x})"),
        8 => format!(
            "{a}.{}({b})",
            rng.pick(&["contains", "startsWith", "endsWith", "matches"])
        ),
        9 => format!(
            "{}({a})",
            rng.pick(&[
                "size",
                "int",
                "uint",
                "double",
                "string",
                "bytes",
                "duration",
                "timestamp",
                "type",
                "dyn",
                "has"
            ])
        ),
        10 => format!("{a}[{b}]"),
        11 => format!(
            "{a}.{}",
            rng.pick(&["a", "b", "c", "n", "l", "size()", "?a"])
        ),
        12 => format!("!{a}"),
        13 => format!("-{a}"),
        14 => {
            // A `+` chain, past the tree depth limit now and then.
            let n = 2 + rng.below(80);
            vec![a.as_str(); n].join(" + ")
        }
        15 => {
            // Brackets, past the nesting limit now and then.
            let n = 1 + rng.below(30);
            format!("{}{a}{}", "(".repeat(n), ")".repeat(n))
        }
        16 => {
            // Work that only the budget stops.
            let y = var(d + 10);
            format!(
                "payload.big.{}({x}, payload.big.exists({y}, {x} + {y} == -1))",
                { rng.pick(&["all", "exists", "map", "filter"]) }
            )
        }
        17 => format!("payload.big.map({x}, {a} + {b})"),
        18 => format!("({a} + {a} + {a} + {a})"),
        19 => format!(
            "{a}.matches('{}')",
            rng.pick(&["(a*)*b", "^[a-z]+$", "(", "\\\\"])
        ),
        20 => format!("[{a}, {b}][?0]"),
        _ => format!("{{'k': {a}, 'j': {b}}}.{}", rng.pick(&["k", "?j", "zz"])),
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    "?",
    ":",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "&&",
    "||",
    "==",
    " in ",
    "'",
    "\"",
    "\\",
    "payload",
    "self",
    "x",
    ".all(",
    ".map(",
    ".filter(",
    "size(",
    "1",
    "0",
    "9223372036854775807",
    "1e400",
    "u",
    "b'",
    "r'",
    "'''",
    "\0",
    "é",
    "\u{1F600}",
    " ",
    "\n",
    "?.",
    "[?",
    "has(",
    "@it",
    "__zen_range__(",
    "__zen_sized__(",
];

fn mutate(rng: &mut Rng, expr: &str) -> String {
    let mut chars: Vec<char> = expr.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(6) {
            0 => {
                let end = (at + 1 + rng.below(8)).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            1 | 2 => {
                let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                chars.splice(at..at, token);
            }
            3 => {
                let end = (at + 1 + rng.below(40)).min(chars.len());
                let piece: Vec<char> = chars[at.min(end)..end].to_vec();
                let to = rng.below(chars.len() + 1);
                chars.splice(to..to, piece);
            }
            4 => chars.truncate(at),
            _ => {
                if chars.len() > 1 {
                    let a = rng.below(chars.len());
                    let b = rng.below(chars.len());
                    chars.swap(a, b);
                }
            }
        }
    }
    chars.into_iter().collect()
}

const BUDGET: u64 = 20_000;

#[derive(Default, Debug)]
struct Outcomes {
    refused: usize,
    values: usize,
    errors: usize,
    over_budget: usize,
    /// Values the direct evaluation gave, checked against the interpreter's.
    direct: usize,
    /// Values read from a document, checked against those read from JSON.
    from_document: usize,
}

/// Checks one evaluation's outcome; `budget` is the one it ran with.
fn check(what: &str, result: &Result<Value, EvalError>, budget: &Budget, out: &mut Outcomes) {
    match result {
        Ok(v) => {
            let text = serde_json::to_string(v).unwrap_or_else(|e| panic!("{what}: {e}"));
            let back: Value = serde_json::from_str(&text).unwrap();
            assert!(
                same_json(&back, v),
                "{what}: the JSON result round-trips: {}",
                short(&text)
            );
            assert!(budget.spent() <= BUDGET, "{what}");
            out.values += 1;
        }
        Err(EvalError::Budget { limit }) => {
            assert_eq!(*limit, BUDGET, "{what}");
            assert_eq!(
                budget.spent(),
                BUDGET,
                "{what}: a budget error spends it all"
            );
            out.over_budget += 1;
        }
        Err(EvalError::Execution(m)) => {
            assert!(!m.is_empty(), "{what}");
            assert!(budget.spent() < BUDGET, "{what}: spent {}", budget.spent());
            out.errors += 1;
        }
        // After evaluation, so the budget may be spent (an error absorbed by `||`, say).
        Err(EvalError::Convert(m)) => {
            assert!(!m.is_empty(), "{what}");
            out.errors += 1;
        }
        Err(e @ EvalError::Type { .. }) => panic!("{what}: evaluate gave {e}"),
    }
}

/// Equal JSON, floats within rounding: serde_json reads floats back to the nearest value only
/// with its `float_roundtrip` feature, which this workspace does not enable.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Lists with the same elements in another order: a comprehension over a map visits its
/// keys in the interpreter's hash order, and in the input's order when evaluated directly.
fn same_elements(a: &Value, b: &Value) -> bool {
    let (Value::Array(a), Value::Array(b)) = (a, b) else {
        return false;
    };
    let sorted = |l: &[Value]| {
        let mut l: Vec<String> = l.iter().map(Value::to_string).collect();
        l.sort();
        l
    };
    sorted(a) == sorted(b)
}

/// The start of a long message.
fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Two outcomes of one expression agree: values as `same` says, errors by kind (messages may
/// print map operands, whose order is not fixed).
fn agree(
    what: &str,
    how: &str,
    a: &Result<Value, EvalError>,
    b: &Result<Value, EvalError>,
    same: impl Fn(&Value, &Value) -> bool,
) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert!(same(x, y), "{what}: {how}: {x} and {y}"),
        (Err(x), Err(y)) => assert_eq!(
            std::mem::discriminant(x),
            std::mem::discriminant(y),
            "{what}: {how}: {}; {}",
            short(&x.to_string()),
            short(&y.to_string())
        ),
        (x, y) => panic!(
            "{what}: {how}: {} and {}",
            short(&format!("{x:?}")),
            short(&format!("{y:?}"))
        ),
    }
}

/// [`agree`], where a list may come in another order (the interpreter's maps iterate in
/// their hash order).
fn agree_up_to_order(
    what: &str,
    how: &str,
    a: &Result<Value, EvalError>,
    b: &Result<Value, EvalError>,
) {
    agree(what, how, a, b, |a, b| {
        same_json(a, b) || same_elements(a, b)
    });
}

fn run_any(
    rng: &mut Rng,
    vars: &Variables,
    doc_vars: &Variables,
    expr: &str,
    what: &str,
    out: &mut Outcomes,
) {
    let program = match compile(expr) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.0.is_empty(), "{what}");
            out.refused += 1;
            return;
        }
    };
    assert!(
        expr.len() <= MAX_EXPRESSION_LENGTH,
        "{what}: compiled past the length limit"
    );
    let mut budget = Budget::new(BUDGET);
    let first = program.evaluate(vars, &mut budget);
    check(what, &first, &budget, out);
    // The payload read from a document instead: the same answer and the same charge. (Where
    // the interpreter answers, maps come in its hash order, so lists may be reordered.)
    let mut doc_budget = Budget::new(BUDGET);
    let from_doc = program.evaluate(doc_vars, &mut doc_budget);
    if !expr.contains('{') {
        agree_up_to_order(what, "from JSON, then from a document", &first, &from_doc);
        if first.is_ok() {
            assert_eq!(
                budget.spent(),
                doc_budget.spent(),
                "{what}: spent on a document"
            );
            out.from_document += 1;
        }
    }
    // Direct evaluation answers as the interpreter does, charging the same. Lists built
    // from maps follow the interpreter's hash order, so those are not compared.
    let mut reference_budget = Budget::new(BUDGET);
    let reference = program.evaluate_reference(vars, &mut reference_budget);
    if !expr.contains('{') {
        agree_up_to_order(what, "direct, then interpreted", &first, &reference);
        if reference.is_ok() {
            assert_eq!(budget.spent(), reference_budget.spent(), "{what}: spent");
            out.direct += usize::from(program.is_direct());
        }
    }
    // The same program again on a fresh budget: nothing carried over from the first run
    // (map literals iterate in a different order each time, so only expressions without
    // them are compared).
    if !expr.contains('{') && !matches!(first, Err(EvalError::Budget { .. })) {
        let mut budget = Budget::new(BUDGET);
        let second = program.evaluate(vars, &mut budget);
        agree(what, "evaluated twice", &first, &second, |a, b| a == b);
        let mut budget = Budget::new(BUDGET);
        match (program.evaluate_bool(vars, &mut budget), &first) {
            (Ok(b), Ok(Value::Bool(want))) => assert_eq!(b, *want, "{what}"),
            (Ok(b), other) => panic!("{what}: evaluate_bool {b}, evaluate {other:?}"),
            (Err(EvalError::Type { .. }), Ok(v)) => assert!(!v.is_boolean(), "{what}"),
            (Err(_), _) => {}
        }
    }
    // The same with `self` bound to a random part of the payload.
    let bound = match rng.below(3) {
        0 => json!(null),
        1 => payload()["m"].clone(),
        _ => json!("x".repeat(rng.below(100))),
    };
    let mut budget = Budget::new(BUDGET);
    let r = program.evaluate_with(vars, "self", &bound, &mut budget);
    check(what, &r, &budget, out);
    // Bound as a document's value instead, with the same answer.
    let text = bound.to_string();
    let doc = Document::parse(&text).expect("JSON");
    let mut doc_budget = Budget::new(BUDGET);
    let from_doc = program.evaluate_with(vars, "self", doc.root(), &mut doc_budget);
    if !expr.contains('{') {
        agree_up_to_order(what, "self from JSON, then from a document", &r, &from_doc);
    }
}

#[test]
fn random_and_mutated_expressions_end_cleanly() {
    let seed = env_u64("ZEN_FUZZ_SEED", 0xce1_0002);
    let iterations = env_u64("ZEN_FUZZ_ITERATIONS", 1500);
    let mut rng = Rng::new(seed);
    let vars = variables();
    let text = payload_text();
    let doc = Document::parse(&text).expect("the payload is JSON");
    let doc_vars = document_variables(&doc);
    let mut out = Outcomes::default();
    for i in 0..iterations {
        let d = 1 + rng.below(4);
        let mut expr = gen_any(&mut rng, d);
        if rng.chance(60) {
            expr = mutate(&mut rng, &expr);
        }
        if rng.chance(2) {
            // Past the length limit.
            expr = format!("{expr} || {}", "true || ".repeat(700)) + "true";
        }
        let what = format!("iteration {i} of seed {seed}: {expr:?}");
        run_any(&mut rng, &vars, &doc_vars, &expr, &what, &mut out);
    }
    eprintln!("seed {seed}: {out:?}");
    // The run reached every outcome.
    assert!(out.refused > 0 && out.values > 0, "{out:?}");
    assert!(out.errors > 0 && out.over_budget > 0, "{out:?}");
    assert!(out.direct > out.values / 10, "{out:?}");
    assert!(out.from_document > out.values / 4, "{out:?}");
}

#[test]
fn limits_refuse_before_parsing_and_budget_errors_name_the_budget() {
    let vars = variables();
    let mut rng = Rng::new(7);
    for _ in 0..50 {
        let n = zen_cel::MAX_NESTING + 1 + rng.below(5000);
        let open = *rng.pick(&["(", "[", "!", "-"]);
        let expr = format!(
            "{}1{}",
            open.repeat(n),
            if open == "(" {
                ")".repeat(n)
            } else if open == "[" {
                "]".repeat(n)
            } else {
                String::new()
            }
        );
        if expr.len() > MAX_EXPRESSION_LENGTH {
            assert!(compile(&expr).unwrap_err().0.contains("characters long"));
        } else {
            assert!(
                compile(&expr).unwrap_err().0.contains("levels deep"),
                "{expr}"
            );
        }
    }
    let p = compile("payload.big.all(x, payload.big.all(y, x + y >= 0))").unwrap();
    for limit in [0, 1, 100, 2001, 2002, 50_000] {
        let mut budget = Budget::new(limit);
        let r = p.evaluate(&vars, &mut budget);
        assert_eq!(r, Err(EvalError::Budget { limit }), "limit {limit}");
        assert_eq!(budget.spent(), limit);
    }
}
