//! Label and field selectors, with the grammar of k8s.io/apimachinery's `labels` and `fields`
//! packages, matched against decoded objects and stored ones read in place.

use std::{borrow::Cow, collections::BTreeSet};

use serde_json::Value;

use crate::{status::ApiError, view::ObjectView};

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Exists(String),
    DoesNotExist(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector`: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '>' => {
                chars.next();
                tokens.push(Token::Gt);
            }
            '<' => {
                chars.next();
                tokens.push(Token::Lt);
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::DoubleEq);
                } else {
                    tokens.push(Token::Eq);
                }
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::NotEq);
                } else {
                    tokens.push(Token::Not);
                }
            }
            _ => {
                let mut ident = String::new();
                while let Some(&c) = chars.peek() {
                    if " \t\n\r,()=!<>".contains(c) {
                        break;
                    }
                    ident.push(c);
                    chars.next();
                }
                tokens.push(Token::Ident(ident));
            }
        }
    }
    Ok(tokens)
}

impl LabelSelector {
    /// Parses a `labelSelector` query value; the empty string selects everything.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        Self::parse_inner(input)
            .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))
    }

    fn parse_inner(input: &str) -> Result<Self, String> {
        let tokens = tokenize(input)?;
        let mut it = tokens.into_iter().peekable();
        let mut reqs = Vec::new();
        if it.peek().is_none() {
            return Ok(Self(reqs));
        }
        loop {
            let req = match it.next() {
                Some(Token::Not) => match it.next() {
                    Some(Token::Ident(key)) => Requirement::DoesNotExist(check_key(key)?),
                    other => return Err(format!("expected a key after '!', found {other:?}")),
                },
                Some(Token::Ident(key)) => {
                    let key = check_key(key)?;
                    match it.peek() {
                        None | Some(Token::Comma) => Requirement::Exists(key),
                        Some(Token::Eq | Token::DoubleEq | Token::NotEq) => {
                            let op = it.next();
                            let value = match it.peek() {
                                Some(Token::Ident(_)) => match it.next() {
                                    Some(Token::Ident(v)) => v,
                                    _ => String::new(),
                                },
                                _ => String::new(),
                            };
                            let value = check_value(value)?;
                            if op == Some(Token::NotEq) {
                                Requirement::NotEquals(key, value)
                            } else {
                                Requirement::Equals(key, value)
                            }
                        }
                        Some(Token::Gt | Token::Lt) => {
                            let op = it.next();
                            let n = match it.next() {
                                Some(Token::Ident(v)) => v.parse::<i64>().map_err(|_| {
                                    format!("for 'Gt', 'Lt' operators, the value must be an integer: {v:?}")
                                })?,
                                other => return Err(format!("expected an integer, found {other:?}")),
                            };
                            if op == Some(Token::Gt) {
                                Requirement::GreaterThan(key, n)
                            } else {
                                Requirement::LessThan(key, n)
                            }
                        }
                        Some(Token::Ident(word)) if word == "in" || word == "notin" => {
                            let negate = word == "notin";
                            it.next();
                            if it.next() != Some(Token::Open) {
                                return Err("expected: '(' after in/notin".to_owned());
                            }
                            let mut values = BTreeSet::new();
                            loop {
                                match it.next() {
                                    Some(Token::Ident(v)) => {
                                        values.insert(check_value(v)?);
                                        match it.next() {
                                            Some(Token::Comma) => continue,
                                            Some(Token::Close) => break,
                                            other => {
                                                return Err(format!(
                                                    "expected ',' or ')', found {other:?}"
                                                ));
                                            }
                                        }
                                    }
                                    Some(Token::Close) if values.is_empty() => {
                                        return Err("for 'in', 'notin' operators, values set can't be empty".into());
                                    }
                                    other => {
                                        return Err(format!("expected a value, found {other:?}"));
                                    }
                                }
                            }
                            if negate {
                                Requirement::NotIn(key, values)
                            } else {
                                Requirement::In(key, values)
                            }
                        }
                        other => {
                            return Err(format!(
                                "found {other:?}, expected: in, notin, =, ==, !=, gt, lt"
                            ));
                        }
                    }
                }
                other => return Err(format!("found {other:?}, expected: !, identifier")),
            };
            reqs.push(req);
            match it.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(other) => return Err(format!("found {other:?}, expected: ','")),
            }
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &impl Selectable) -> bool {
        let get = |k: &str| object.label(k);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(x.as_ref())),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x.as_ref())),
            Requirement::GreaterThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::LessThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

fn check_key(key: String) -> Result<String, String> {
    let (prefix, name) = key
        .split_once('/')
        .map_or((None, key.as_str()), |(p, n)| (Some(p), n));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok =
        prefix.is_none_or(|p| crate::objects::dns_subdomain_problem(p).is_none() && !p.is_empty());
    if name_ok && prefix_ok {
        Ok(key)
    } else {
        Err(format!(
            "key: Invalid value: {key:?}: a valid label key must be a qualified name"
        ))
    }
}

fn check_value(value: String) -> Result<String, String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if ok {
        Ok(value)
    } else {
        Err(format!(
            "values[0]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
        ))
    }
}

/// One field requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed `fieldSelector` over the fields a resource allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses a `fieldSelector`; fields outside `allowed` (plus `metadata.name` and
    /// `metadata.namespace`) are refused as kube-apiserver refuses them.
    pub fn parse(input: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], false)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            let field = field.trim().to_owned();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !allowed.contains(&field.as_str())
            {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldRequirement {
                field,
                value: unescape(value)?,
                negate,
            });
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &impl Selectable) -> bool {
        self.0.iter().all(|r| {
            let actual = object.field(&r.field);
            (actual.as_deref().unwrap_or("") == r.value) != r.negate
        })
    }
}

/// What selectors read from an object: decoded objects and stored ones read in place answer
/// the same way.
pub trait Selectable {
    fn label(&self, key: &str) -> Option<Cow<'_, str>>;
    /// A field as a field selector compares it: strings as they are, other values as JSON
    /// text, absent and null as `None`.
    fn field(&self, path: &str) -> Option<Cow<'_, str>>;
}

impl Selectable for Value {
    fn label(&self, key: &str) -> Option<Cow<'_, str>> {
        self.pointer("/metadata/labels")?
            .get(key)?
            .as_str()
            .map(Cow::Borrowed)
    }

    fn field(&self, path: &str) -> Option<Cow<'_, str>> {
        let node = path.split('.').try_fold(self, |n, part| n.get(part))?;
        match node {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Null => None,
            other => Some(Cow::Owned(other.to_string())),
        }
    }
}

impl Selectable for ObjectView<'_> {
    fn label(&self, key: &str) -> Option<Cow<'_, str>> {
        ObjectView::label(self, key)
    }

    fn field(&self, path: &str) -> Option<Cow<'_, str>> {
        let raw = self.get(path)?.get();
        match raw {
            "null" => None,
            _ if raw.starts_with('"') => self.str(path),
            _ => Some(Cow::Borrowed(raw)),
        }
    }
}

/// A request's label and field selectors together.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &impl Selectable) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> Result<String, ApiError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )));
                }
                None => {
                    return Err(ApiError::BadRequest(
                        "invalid field selector: unterminated escape".into(),
                    ));
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"env": "prod", "tier": "web", "n": "7"}},
               "spec": {"severity": "critical", "source": "falco"}})
    }

    #[test]
    fn label_grammar() {
        let o = obj();
        for (sel, want) in [
            ("", true),
            ("env=prod", true),
            ("env==prod", true),
            ("env!=prod", false),
            ("env", true),
            ("!env", false),
            ("!missing", true),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("missing notin (x)", true),
            ("env=prod,tier=web", true),
            (" env = prod , tier in (web) ", true),
            ("n>5", true),
            ("n<5", false),
            ("app.kubernetes.io/name", false),
            ("env=", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&o), want, "{sel}");
        }
    }

    #[test]
    fn bad_label_selectors() {
        for bad in [
            "env in prod",
            "env in ()",
            "=x",
            "env=a b",
            "bad key!x",
            "n>x",
            "-x=1",
            "env,",
        ] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert_eq!(err.code(), http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let allowed = ["spec.severity", "spec.source"];
        let o = obj();
        for (sel, want) in [
            ("spec.severity=critical", true),
            ("spec.severity==critical,metadata.namespace=ns", true),
            ("spec.severity!=critical", false),
            ("metadata.name=b", false),
            ("spec.source=fal\\,co", false),
        ] {
            assert_eq!(
                FieldSelector::parse(sel, &allowed).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        let err = FieldSelector::parse("spec.title=x", &allowed).unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.title");
        assert!(FieldSelector::parse("spec.severity", &allowed).is_err());
    }
}
