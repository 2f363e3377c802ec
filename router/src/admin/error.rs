//! Why a signup failed: one error type for the signup steps (claim, site user, provisioning),
//! each variant with one status and one `paddock_signups_total` outcome.

use http::StatusCode;

use crate::metrics::Signup;

/// Why a signup failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("{0}")]
    Invalid(String),
    #[error("the name `{0}` is already taken")]
    Taken(String),
    #[error("signup refused: {0}")]
    Forbidden(&'static str),
    #[error("too many signups from this address; try again in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("provisioning failed: {0}")]
    Provision(String),
    #[error("{0}")]
    Internal(String),
}

impl SignupError {
    /// The `outcome` label of `paddock_signups_total`.
    pub fn outcome(&self) -> Signup {
        match self {
            SignupError::Invalid(_) => Signup::Invalid,
            SignupError::Taken(_) => Signup::Conflict,
            SignupError::RateLimited(_) => Signup::RateLimited,
            SignupError::Forbidden(_) => Signup::Forbidden,
            SignupError::Unavailable(_) | SignupError::Provision(_) | SignupError::Internal(_) => {
                Signup::Failed
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SignupError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SignupError::Taken(_) => StatusCode::CONFLICT,
            SignupError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            SignupError::Forbidden(_) => StatusCode::FORBIDDEN,
            SignupError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SignupError::Provision(_) | SignupError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// An internal failure, logged once here.
pub(super) fn internal(msg: String) -> SignupError {
    tracing::error!("signup: {msg}");
    SignupError::Internal(msg)
}
