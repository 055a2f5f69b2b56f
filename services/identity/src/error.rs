use axum::response::{IntoResponse, Response};
use kit::{FieldError, Problem};

/// Everything an identity request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("too many failed attempts")]
    Throttled { retry_after_secs: u64 },
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hash(#[from] crate::domain::password::HashError),
    #[error("token signing: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error("event encoding: {0}")]
    Event(#[from] serde_json::Error),
}

impl IdentityError {
    pub fn field(field: &str, message: &str) -> Self {
        IdentityError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<IdentityError> for Problem {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Validation(errors) => Problem::validation(errors),
            IdentityError::EmailTaken => {
                Problem::conflict("email-taken", "This email is already registered")
            }
            IdentityError::InvalidCredentials => Problem::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Email or password is incorrect",
            ),
            IdentityError::InvalidRefreshToken => Problem::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "The refresh token is not valid",
            ),
            IdentityError::Throttled { retry_after_secs } => Problem::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                "login-throttled",
                "Too many failed sign-in attempts; try again later",
            )
            .retry_after(retry_after_secs),
            IdentityError::UserNotFound => Problem::not_found("no such user"),
            IdentityError::Problem(p) => p,
            IdentityError::Database(e) => Problem::database(&e),
            IdentityError::Hash(e) => Problem::internal(&e),
            IdentityError::Signing(e) => Problem::internal(&e),
            IdentityError::Event(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
