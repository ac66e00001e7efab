//! Who is calling. `Auth` (for `/v1`) resolves the API key to its team and checks
//! `x-team-id`; `Admin` checks the operator key. Keys are compared in constant time.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::domain::TeamId;
use crate::engine::Engine;

/// An authenticated `/v1` caller.
pub struct Auth {
    pub team: TeamId,
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn engine(req: &HttpRequest) -> Result<&Engine, ApiError> {
    req.app_data::<web::Data<Engine>>()
        .map(|d| d.get_ref())
        .ok_or_else(|| ApiError::Internal("engine missing from app data".into()))
}

fn authenticate(req: &HttpRequest) -> Result<Auth, ApiError> {
    let engine = engine(req)?;
    if !engine.is_ready() {
        return Err(ApiError::Unavailable(
            "starting: recovery is not finished".into(),
        ));
    }
    let token = bearer(req).ok_or_else(|| {
        ApiError::Unauthorized("missing `Authorization: Bearer <api key>`".into())
    })?;
    let key = engine
        .authenticate(token)?
        .ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
    let team = req
        .headers()
        .get("x-team-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Unauthorized("missing `x-team-id` header".into()))?;
    if team != key.team_id.as_str() {
        return Err(ApiError::Forbidden);
    }
    Ok(Auth { team: key.team_id })
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Auth, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// An authenticated operator (`/admin`).
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let engine = engine(req)?;
            let Some(admin_key) = engine.config().auth.admin_key.as_deref() else {
                return Err(ApiError::Unauthorized(
                    "the admin API is off: set FASTHOOK_ADMIN_KEY".into(),
                ));
            };
            let token = bearer(req).ok_or_else(|| {
                ApiError::Unauthorized("missing `Authorization: Bearer <admin key>`".into())
            })?;
            if bool::from(token.as_bytes().ct_eq(admin_key.as_bytes())) {
                Ok(Admin)
            } else {
                Err(ApiError::Unauthorized("wrong admin key".into()))
            }
        })())
    }
}
