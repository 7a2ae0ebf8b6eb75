//! What form a response takes, from the `Accept` header: plain JSON, a `meta.k8s.io` Table,
//! `PartialObjectMetadata`, or aggregated discovery.

use crate::status::ApiError;

/// The `meta.k8s.io` version a Table or partial metadata was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaVersion {
    V1,
    V1beta1,
}

impl MetaVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "meta.k8s.io/v1",
            Self::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// Aggregated discovery versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryVersion {
    V2,
    V2beta1,
}

impl DiscoveryVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V2 => "apidiscovery.k8s.io/v2",
            Self::V2beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The exact Content-Type the answer must carry.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Self::V2beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// The chosen output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Table(MetaVersion),
    /// `PartialObjectMetadata` for single objects, `PartialObjectMetadataList` for lists.
    PartialMetadata(MetaVersion),
    Discovery(DiscoveryVersion),
}

struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    fn parse(s: &'a str) -> Self {
        let mut parts = s.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        Self { essence, params }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// Picks the first form of `accept` this server can produce; `None` or an empty header means
/// JSON. `discovery` allows aggregated discovery answers (only `/apis` gives them).
pub fn negotiate(accept: Option<&str>, discovery: bool) -> Result<Output, ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Output::Json);
    };
    for range in accept.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let m = MediaRange::parse(range);
        if m.param("q")
            .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
        {
            continue;
        }
        let json_like = matches!(m.essence, "application/json" | "*/*" | "application/*");
        if !json_like {
            continue;
        }
        match (m.param("as"), m.param("g"), m.param("v")) {
            (None, _, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => {
                return Ok(Output::Table(MetaVersion::V1));
            }
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                return Ok(Output::Table(MetaVersion::V1beta1));
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some(v),
            ) => match v {
                "v1" => return Ok(Output::PartialMetadata(MetaVersion::V1)),
                "v1beta1" => return Ok(Output::PartialMetadata(MetaVersion::V1beta1)),
                _ => continue,
            },
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some(v)) if discovery => {
                match v {
                    "v2" => return Ok(Output::Discovery(DiscoveryVersion::V2)),
                    "v2beta1" => return Ok(Output::Discovery(DiscoveryVersion::V2beta1)),
                    _ => continue,
                }
            }
            _ => continue,
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io (asked for {accept})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_and_kube_apiserver_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(kubectl), false).unwrap(),
            Output::Table(MetaVersion::V1)
        );
        assert_eq!(negotiate(None, false).unwrap(), Output::Json);
        assert_eq!(
            negotiate(Some("application/json, */*"), false).unwrap(),
            Output::Json
        );
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        assert_eq!(
            negotiate(Some(v2beta1), true).unwrap(),
            Output::Discovery(DiscoveryVersion::V2beta1)
        );
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate(Some(v2), true).unwrap(),
            Output::Discovery(DiscoveryVersion::V2)
        );
        assert_eq!(negotiate(Some(v2), false).unwrap(), Output::Json);
        let gc = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate(Some(gc), false).unwrap(),
            Output::PartialMetadata(MetaVersion::V1)
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), false)
                .unwrap_err()
                .code(),
            http::StatusCode::NOT_ACCEPTABLE
        );
    }
}
