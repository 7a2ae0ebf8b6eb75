//! Arbitrary CEL: the input is an expression, a NUL byte, and a JSON document bound as
//! `payload` (and `self`). Each expression that compiles is evaluated with a small budget.
//!
//! Properties checked besides "no panic, no hang, no stack overflow": a result converts to
//! JSON that serializes and is the interpreter's, charged as the interpreter charges; a budget error names the budget given; an expression over the
//! length limit never compiles.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zen_cel::{Budget, EvalError, MAX_EXPRESSION_LENGTH, Variables, compile};

const BUDGET: u64 = 50_000;

fn outcome(result: Result<Value, EvalError>, budget: &Budget) {
    match result {
        Ok(v) => {
            serde_json::to_vec(&v).expect("a result serializes");
            assert!(budget.spent() <= BUDGET);
        }
        Err(EvalError::Budget { limit }) => {
            assert_eq!(limit, BUDGET);
            assert_eq!(budget.spent(), BUDGET, "a budget error spends it all");
        }
        Err(EvalError::Execution(m) | EvalError::Convert(m)) => {
            assert!(!m.is_empty());
            assert!(budget.spent() < BUDGET);
        }
        Err(EvalError::Type { got, .. }) => assert!(!got.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let (expression, json) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(expression) = std::str::from_utf8(expression) else {
        return;
    };
    let payload: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
    let program = match compile(expression) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.0.is_empty());
            return;
        }
    };
    assert!(expression.len() <= MAX_EXPRESSION_LENGTH);
    let mut vars = Variables::new();
    vars.set("payload", &payload);
    zen_cel::with_stack(|| {
        let mut budget = Budget::new(BUDGET);
        let r = program.evaluate(&vars, &mut budget);
        // Direct evaluation gives the interpreter's value (maps aside: the interpreter
        // iterates them in hash order).
        let mut reference = Budget::new(BUDGET);
        if let Ok(v) = &r
            && !expression.contains('{')
            && let Ok(w) = program.evaluate_reference(&vars, &mut reference)
            && !v.is_array()
        {
            assert_eq!(v, &w, "direct and interpreted results differ");
            assert_eq!(
                budget.spent(),
                reference.spent(),
                "direct and interpreted evaluations charge differently"
            );
        }
        outcome(r, &budget);
        let mut budget = Budget::new(BUDGET);
        let r = program.evaluate_with(&vars, "self", &payload, &mut budget);
        outcome(r, &budget);
        let mut budget = Budget::new(BUDGET);
        match program.evaluate_bool(&vars, &mut budget) {
            Ok(_) => {}
            Err(e) => outcome(Err(e), &budget),
        }
    });
});
