//! Durations written the way Kubernetes writes them (`30s`, `5m`, `1h30m`, `720h`).
//!
//! The same syntax as `metav1.Duration`, so CEL's `duration()` in CRD validation rules and in
//! policies parses the values users write.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Go's `time.ParseDuration` syntax, restricted to non-negative values.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A non-negative duration in Go syntax. Keeps the text as written, so objects read back the
/// way users wrote them (`720h` stays `720h`).
#[derive(Clone)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

impl Duration {
    /// A whole number of seconds, written the way Go prints durations (`1h30m0s`).
    pub fn from_secs(secs: u64) -> Self {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let text = match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m{s}s"),
            _ => format!("{h}h{m}m{s}s"),
        };
        Self {
            text,
            value: std::time::Duration::from_secs(secs),
        }
    }

    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Duration {}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (use Go syntax such as \"30s\", \"5m\" or \"1h30m\")"
)]
pub struct ParseDurationError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ParseDurationError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.starts_with('-') {
            return Err(fail("negative durations are not allowed"));
        }
        if s.is_empty() || s.starts_with('+') || s.contains(char::is_whitespace) {
            return Err(fail("expected numbers each followed by a unit"));
        }
        let d: kube::core::Duration = s.parse().map_err(|e| fail(&format!("{e}")))?;
        if d.is_negative() {
            return Err(fail("negative durations are not allowed"));
        }
        Ok(Self {
            text: s.to_owned(),
            value: d.into(),
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({})", self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!("720h".parse::<Duration>().unwrap().to_string(), "720h");
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m0s");
        assert_eq!(Duration::from_secs(300).to_string(), "5m0s");
        assert_eq!(Duration::from_secs(300), "5m".parse().unwrap());
        assert_eq!(
            "1.5s".parse::<Duration>().unwrap().as_std().as_millis(),
            1500
        );
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["", "5", "-5m", "5d", "m", "5 m", "+5m"] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for good in ["5m", "1h30m", "0s", "1.5s", "100ms", "3µs"] {
            assert!(re.is_match(good), "{good}");
            assert!(good.parse::<Duration>().is_ok(), "{good}");
        }
        for bad in ["", "5", "5d", "-1s", "5 m"] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }
}
