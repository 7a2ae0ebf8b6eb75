//! Keys, ordered the way etcd orders `/<resource>/<namespace>/<name>`.

use std::fmt;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The flat form stored on disk. Names and namespaces cannot contain `/` (they are DNS
    /// labels or subdomains), so the encoding is unambiguous and keeps the order.
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.resource, self.namespace, self.name)
    }

    pub fn decode(flat: &str) -> Option<Self> {
        let mut parts = flat.splitn(3, '/');
        Some(Self::new(parts.next()?, parts.next()?, parts.next()?))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A set of keys: one resource, in one namespace or all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub resource: String,
    pub namespace: Option<String>,
}

impl Prefix {
    pub fn new(resource: &str, namespace: Option<&str>) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
        }
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        key.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
    }

    /// The flat-key range `[start, end)` of this prefix.
    pub fn range(&self) -> (String, String) {
        let start = match &self.namespace {
            Some(ns) => format!("{}/{ns}/", self.resource),
            None => format!("{}/", self.resource),
        };
        // '0' is the character after '/', so this is the first key past the prefix.
        let end = format!("{}0", &start[..start.len() - 1]);
        (start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keys_round_trip_and_order() {
        let k = ObjectKey::new("observations", "default", "a.b");
        assert_eq!(ObjectKey::decode(&k.encode()), Some(k.clone()));
        let (start, end) = Prefix::new("observations", Some("default")).range();
        assert!(start.as_str() <= k.encode().as_str() && k.encode() < end);
        let other = ObjectKey::new("observations", "default-2", "a");
        assert!(!(start.as_str() <= other.encode().as_str() && other.encode() < end));
        let (s, e) = Prefix::new("observations", None).range();
        assert!(s.as_str() <= other.encode().as_str() && other.encode() < e);
        assert!(Prefix::new("observations", None).contains(&other));
        assert!(!Prefix::new("observations", Some("default")).contains(&other));
    }
}
