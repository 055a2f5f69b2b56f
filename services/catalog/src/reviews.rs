//! Review use cases: one review per customer per product, and the
//! product's running average kept in the same transaction.

use kit::auth::AuthUser;
use kit::clock::now_millis;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{NewReview, ReviewDraft};
use crate::error::{CatalogError, Result};
use crate::storage::products;
use crate::storage::reviews::{self, InsertOutcome, ReviewRecord};

pub async fn create(
    state: &AppState,
    author: &AuthUser,
    product_id: Uuid,
    input: &NewReview,
) -> Result<ReviewRecord> {
    let draft = ReviewDraft::parse(input)?;
    let review = ReviewRecord {
        id: Uuid::now_v7(),
        product_id,
        user_id: author.id,
        rating: draft.rating,
        title: draft.title,
        body: draft.body,
        created_at: now_millis(),
    };
    let mut tx = state.db.begin().await?;
    match reviews::insert(&mut tx, &review).await? {
        InsertOutcome::Inserted => {}
        InsertOutcome::AlreadyReviewed => return Err(CatalogError::AlreadyReviewed),
        InsertOutcome::NoSuchProduct => return Err(CatalogError::ProductNotFound),
    }
    // Retired products take no new reviews.
    if !products::add_rating(&mut tx, product_id, review.rating).await? {
        return Err(CatalogError::ProductNotFound);
    }
    tx.commit().await?;
    state.cache.invalidate_all().await;
    tracing::info!(review_id = %review.id, %product_id, "review added");
    Ok(review)
}

/// A page of a product's reviews, newest first, with their total.
pub async fn page(
    state: &AppState,
    product_id: Uuid,
    page: u32,
    page_size: u32,
) -> Result<(Vec<ReviewRecord>, i64)> {
    if !products::exists(state.db.pool(), product_id).await? {
        return Err(CatalogError::ProductNotFound);
    }
    let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
    Ok(reviews::page(state.db.pool(), product_id, i64::from(page_size), offset).await?)
}
