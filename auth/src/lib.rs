//! Who is calling: the user a request authenticates as, found the way kube-apiserver finds
//! it. Authorization (issue 6) builds on the [`UserInfo`] this crate puts on requests.

pub mod authn;
mod user;

pub use user::UserInfo;
