use axum::response::{IntoResponse, Response};
use kit::Problem;

/// Everything a notifications request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<NotificationsError> for Problem {
    fn from(e: NotificationsError) -> Self {
        match e {
            NotificationsError::Problem(p) => p,
            NotificationsError::Database(e) => Problem::database(&e),
        }
    }
}

impl IntoResponse for NotificationsError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = NotificationsError> = std::result::Result<T, E>;
