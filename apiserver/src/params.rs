//! Query parameters of resource requests, parsed once into types.

use std::time::Duration;

use zen_crds::schema::UnknownFields;

use crate::{status::ApiError, table::IncludeObject};

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionMatch {
    NotOlderThan,
    Exact,
}

/// Every parameter a resource request may carry.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub version_match: Option<VersionMatch>,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: Option<bool>,
    pub dry_run: bool,
    pub field_validation: UnknownFields,
    pub include_object: IncludeObject,
}

fn boolean(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" | "True" => Ok(true),
        "false" | "0" | "False" | "" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "invalid value {v:?} for {name}: expected true or false"
        ))),
    }
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.as_ref();
            match k.as_ref() {
                "labelSelector" => p.label_selector = v.to_owned(),
                "fieldSelector" => p.field_selector = v.to_owned(),
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::BadRequest(format!("invalid limit {v:?}")))?;
                    p.limit = (n > 0).then_some(n as usize);
                }
                "continue" if !v.is_empty() => p.continue_token = Some(v.to_owned()),
                "resourceVersion" if !v.is_empty() => p.resource_version = Some(v.to_owned()),
                "resourceVersionMatch" if !v.is_empty() => {
                    p.version_match = Some(match v {
                        "NotOlderThan" => VersionMatch::NotOlderThan,
                        "Exact" => VersionMatch::Exact,
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "resourceVersionMatch: Unsupported value: {v:?}: supported values: \"Exact\", \"NotOlderThan\""
                            )));
                        }
                    })
                }
                "watch" => p.watch = boolean("watch", v)?,
                "allowWatchBookmarks" => p.allow_bookmarks = boolean("allowWatchBookmarks", v)?,
                "timeoutSeconds" => {
                    let s: u64 = v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("invalid timeoutSeconds {v:?}"))
                    })?;
                    p.timeout = Some(Duration::from_secs(s));
                }
                "sendInitialEvents" => {
                    p.send_initial_events = Some(boolean("sendInitialEvents", v)?)
                }
                "dryRun" => match v {
                    "All" => p.dry_run = true,
                    "" => {}
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "dryRun: Unsupported value: {v:?}: supported values: \"All\""
                        )));
                    }
                },
                "fieldValidation" => {
                    p.field_validation = match v {
                        "Strict" => UnknownFields::Strict,
                        "Warn" | "" => UnknownFields::Warn,
                        "Ignore" => UnknownFields::Ignore,
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "fieldValidation: Unsupported value: {v:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                            )));
                        }
                    }
                }
                "includeObject" => {
                    p.include_object = IncludeObject::parse(v).ok_or_else(|| {
                        ApiError::BadRequest(format!("includeObject: Unsupported value: {v:?}"))
                    })?
                }
                _ => {}
            }
        }
        if p.version_match.is_some() && p.resource_version.is_none() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        if p.continue_token.is_some() && p.resource_version.as_deref().is_some_and(|rv| rv != "0") {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        if p.send_initial_events.is_some() && !p.watch {
            return Err(ApiError::BadRequest(
                "sendInitialEvents is forbidden for list".into(),
            ));
        }
        Ok(p)
    }

    /// The numeric resourceVersion, if one was given.
    pub fn revision(&self) -> Result<Option<u64>, ApiError> {
        self.resource_version
            .as_deref()
            .map(|rv| {
                rv.parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kubectl_sends() {
        let p = Params::parse(Some("labelSelector=team%3Dpayments&limit=500&watch=true&resourceVersion=12&fieldValidation=Strict")).unwrap();
        assert_eq!(p.label_selector, "team=payments");
        assert_eq!(p.limit, Some(500));
        assert!(p.watch);
        assert_eq!(p.revision().unwrap(), Some(12));
        assert_eq!(p.field_validation, UnknownFields::Strict);
    }

    #[test]
    fn refuses_bad_combinations() {
        for q in [
            "dryRun=Some",
            "resourceVersionMatch=Exact",
            "continue=x&resourceVersion=5",
            "sendInitialEvents=true",
            "limit=x",
            "watch=maybe",
        ] {
            assert!(Params::parse(Some(q)).is_err(), "{q}");
        }
    }
}
