//! How a request is stored: the request without its body, and where the body is in the
//! body log (`body_log`).

use serde::{Deserialize, Serialize};

use super::body_log::BodyRef;
use crate::domain::Request;

/// The stored form of a request; `request.body` is empty, the body is at `body`.
#[derive(Debug, Deserialize)]
pub struct RequestRecord {
    pub body: BodyRef,
    pub request: Request,
}

/// Borrowed twin of `RequestRecord`, to encode without cloning the request.
#[derive(Serialize)]
pub struct NewRequestRecord<'a> {
    pub body: BodyRef,
    pub request: &'a Request,
}
