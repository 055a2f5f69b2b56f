use axum::response::{IntoResponse, Response};
use kit::{FieldError, Problem};

/// Everything a catalog request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("product not found")]
    ProductNotFound,
    #[error("category not found")]
    CategoryNotFound,
    #[error("SKU already in use")]
    SkuTaken,
    #[error("slug already in use")]
    SlugTaken,
    /// The counts, when known (a row added concurrently is caught by the
    /// foreign key, without them).
    #[error("category still in use")]
    CategoryInUse { usage: Option<(i64, i64)> },
    #[error("product already reviewed by this user")]
    AlreadyReviewed,
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl CatalogError {
    pub fn field(field: &str, message: &str) -> Self {
        CatalogError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<Vec<FieldError>> for CatalogError {
    fn from(errors: Vec<FieldError>) -> Self {
        CatalogError::Validation(errors)
    }
}

impl From<CatalogError> for Problem {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Validation(errors) => Problem::validation(errors),
            CatalogError::ProductNotFound => Problem::not_found("no such product"),
            CatalogError::CategoryNotFound => Problem::not_found("no such category"),
            CatalogError::SkuTaken => {
                Problem::conflict("sku-taken", "Another product already has this SKU")
            }
            CatalogError::SlugTaken => {
                Problem::conflict("slug-taken", "Another category already has this slug")
            }
            CatalogError::CategoryInUse { usage } => {
                let problem = Problem::conflict(
                    "category-in-use",
                    "The category still has products or subcategories",
                );
                match usage {
                    Some((children, products)) => problem.detail(format!(
                        "it has {children} subcategories and {products} products (retired ones included); move or delete them first"
                    )),
                    None => problem.detail("move or delete its subcategories and products first"),
                }
            }
            CatalogError::AlreadyReviewed => {
                Problem::conflict("already-reviewed", "You have already reviewed this product")
            }
            CatalogError::Problem(p) => p,
            CatalogError::Database(e) => Problem::database(&e),
            CatalogError::Encoding(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
