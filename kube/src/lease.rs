//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it: the holder renews the Lease; another replica takes it over only once it has not been
//! renewed for its whole duration. Every write carries the resourceVersion read, so two
//! candidates cannot both win.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};

use crate::Client;

/// What a candidate should do about a Lease it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nobody holds it: create it.
    Create(Value),
    /// It is ours, or free to take: write this (with the resourceVersion read).
    Write(Value),
    /// Someone else holds it and renewed it recently.
    Follow { holder: String },
}

fn micro_time(unix_micros: i64) -> String {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_time(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1000) as i64)
}

/// The step for `identity` given the Lease read (`None`: it does not exist), at `now`
/// (Unix microseconds).
pub fn decide(
    lease: Option<&Value>,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
    now: i64,
) -> Step {
    let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    let Some(lease) = lease else {
        return Step::Create(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "holderIdentity": identity,
                "leaseDurationSeconds": seconds,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            }
        }));
    };
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or_default();
    let renewed = spec["renewTime"].as_str().and_then(parse_time).unwrap_or(0);
    let held_for = spec["leaseDurationSeconds"].as_i64().unwrap_or(seconds);
    let expired = renewed.saturating_add(held_for.saturating_mul(1_000_000)) < now;
    let mut next = lease.clone();
    if holder == identity {
        next["spec"]["renewTime"] = json!(micro_time(now));
        next["spec"]["leaseDurationSeconds"] = json!(seconds);
        return Step::Write(next);
    }
    if holder.is_empty() || expired {
        let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
        next["spec"] = json!({
            "holderIdentity": identity,
            "leaseDurationSeconds": seconds,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions + 1,
        });
        return Step::Write(next);
    }
    Step::Follow {
        holder: holder.to_owned(),
    }
}

/// Whether this replica currently leads, kept up to date by [`run`].
#[derive(Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Campaigns for the Lease `namespace/name` as `identity`: one round before returning (so
/// the answer is known at start), then forever, renewing every third of `duration` while
/// leading and stepping down as soon as a renewal fails.
pub async fn campaign(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
) -> Leadership {
    let leadership = Leadership::default();
    let flag = leadership.0.clone();
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}");
    let round = move || {
        let (client, namespace, name, identity, path) = (
            client.clone(),
            namespace.clone(),
            name.clone(),
            identity.clone(),
            path.clone(),
        );
        async move {
            let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
            let read = match client.get(&path).await {
                Ok(l) => Ok(Some(l)),
                Err(e) if Client::is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            };
            match read {
                Err(e) => {
                    tracing::warn!(error = %e, "reading the Lease failed");
                    false
                }
                Ok(lease) => {
                    match decide(lease.as_ref(), &namespace, &name, &identity, duration, now) {
                        Step::Create(l) => client
                            .create(
                                &format!(
                                    "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
                                ),
                                &l,
                            )
                            .await
                            .is_ok(),
                        Step::Write(l) => client
                            .request(http::Method::PUT, &path, Some((&l, "application/json")))
                            .await
                            .is_ok(),
                        Step::Follow { .. } => false,
                    }
                }
            }
        }
    };
    let report = move |flag: &AtomicBool, leading: bool| {
        if flag.swap(leading, Ordering::AcqRel) != leading {
            tracing::info!(leading, "certificate and expiry leadership changed");
        }
    };
    report(&flag, round().await);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(duration / 3).await;
            report(&flag, round().await);
        }
    });
    leadership
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);
    const NOW: i64 = 1_795_400_000_000_000;

    #[test]
    fn create_renew_follow_and_take_over() {
        let Step::Create(created) = decide(None, "zen-system", "zen-watcher", "a", D, NOW) else {
            panic!("a missing Lease is created")
        };
        assert_eq!(created["spec"]["holderIdentity"], "a");
        assert_eq!(created["spec"]["renewTime"], "2026-11-23T02:13:20.000000Z");
        let mut stored = created.clone();
        stored["metadata"]["resourceVersion"] = json!("7");

        // The holder renews, keeping the resourceVersion it read as the precondition.
        let Step::Write(renewed) = decide(
            Some(&stored),
            "zen-system",
            "zen-watcher",
            "a",
            D,
            NOW + 5_000_000,
        ) else {
            panic!()
        };
        assert_eq!(renewed["metadata"]["resourceVersion"], "7");
        assert_eq!(renewed["spec"]["renewTime"], "2026-11-23T02:13:25.000000Z");
        assert_eq!(
            renewed["spec"]["acquireTime"],
            created["spec"]["acquireTime"]
        );

        // Another replica follows while the Lease is fresh, and takes it once it is stale.
        assert_eq!(
            decide(
                Some(&stored),
                "zen-system",
                "zen-watcher",
                "b",
                D,
                NOW + 14_000_000
            ),
            Step::Follow { holder: "a".into() }
        );
        let Step::Write(taken) = decide(
            Some(&stored),
            "zen-system",
            "zen-watcher",
            "b",
            D,
            NOW + 16_000_000,
        ) else {
            panic!()
        };
        assert_eq!(taken["spec"]["holderIdentity"], "b");
        assert_eq!(taken["spec"]["leaseTransitions"], 1);
        assert_eq!(taken["metadata"]["resourceVersion"], "7");
    }
}
