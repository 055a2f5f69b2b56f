//! The reconcilers' error.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serialize an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("{0} has no {1}")]
    MissingField(&'static str, &'static str),
    #[error("cannot generate a key: {0}")]
    KeyGeneration(String),
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Serialize(_) => "serialize",
            Error::MissingField(..) => "missing_field",
            Error::KeyGeneration(_) => "key_generation",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
