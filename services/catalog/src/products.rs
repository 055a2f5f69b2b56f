//! Product use cases: create, replace, retire, read and list.

use kit::clock::now_millis;
use kit::events::Envelope;
use uuid::Uuid;

use crate::AppState;
use crate::domain::product::parse_category_id;
use crate::domain::{NewProduct, ProductDraft, ProductQuery};
use crate::error::{CatalogError, Result};
use crate::events::{self, ProductCreated, ProductDeleted, ProductUpdated};
use crate::storage::categories;
use crate::storage::products::{self, ProductRecord, SearchPage, WriteOutcome};

/// Check every field, including that the category exists, and report all
/// problems at once.
async fn validate(state: &AppState, input: &NewProduct) -> Result<ProductDraft> {
    let mut errors = Vec::new();
    if let Ok(id) = parse_category_id(&input.category_id)
        && !categories::exists(state.db.pool(), id).await?
    {
        errors.push(kit::FieldError::new("category_id", "no such category"));
    }
    match ProductDraft::parse(input) {
        Ok(draft) if errors.is_empty() => Ok(draft),
        Ok(_) => Err(errors.into()),
        Err(mut all) => {
            all.extend(errors);
            Err(all.into())
        }
    }
}

fn written(outcome: WriteOutcome) -> Result<()> {
    match outcome {
        WriteOutcome::Written => Ok(()),
        WriteOutcome::NotFound => Err(CatalogError::ProductNotFound),
        WriteOutcome::SkuTaken => Err(CatalogError::SkuTaken),
        // The category went away after validation.
        WriteOutcome::CategoryMissing => {
            Err(CatalogError::field("category_id", "no such category"))
        }
    }
}

pub async fn create(state: &AppState, input: &NewProduct) -> Result<ProductRecord> {
    let draft = validate(state, input).await?;
    let now = now_millis();
    let product = ProductRecord {
        id: Uuid::now_v7(),
        sku: draft.sku.as_str().to_string(),
        name: draft.name,
        description: draft.description,
        price: draft.price.to_money(),
        stock: draft.stock,
        category_id: draft.category_id,
        is_active: draft.is_active,
        rating_sum: 0,
        rating_count: 0,
        rating_avg_x100: 0,
        created_at: now,
        updated_at: now,
        images: draft.images,
    };
    let event = Envelope::new(
        events::SERVICE,
        events::PRODUCT_CREATED,
        ProductCreated::from(&product),
    )?;
    let mut tx = state.db.begin().await?;
    written(products::insert(&mut tx, &product).await?)?;
    let recorded = state.outbox.record(&mut tx, &event).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    state.cache.invalidate_all().await;
    tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
    Ok(product)
}

/// Replace a product's admin-owned fields (PUT).
pub async fn replace(state: &AppState, id: Uuid, input: &NewProduct) -> Result<ProductRecord> {
    let draft = validate(state, input).await?;
    let mut tx = state.db.begin().await?;
    let Some(old) = products::for_update(&mut tx, state.db.backend(), id).await? else {
        return Err(CatalogError::ProductNotFound);
    };
    let product = ProductRecord {
        id,
        sku: draft.sku.as_str().to_string(),
        name: draft.name,
        description: draft.description,
        price: draft.price.to_money(),
        stock: draft.stock,
        category_id: draft.category_id,
        is_active: draft.is_active,
        updated_at: now_millis().max(old.updated_at),
        images: draft.images,
        ..old.clone()
    };
    written(products::update(&mut tx, &product).await?)?;
    let event = Envelope::new(
        events::SERVICE,
        events::PRODUCT_UPDATED,
        ProductUpdated::new(&old, &product),
    )?;
    let recorded = state.outbox.record(&mut tx, &event).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    state.cache.invalidate_all().await;
    tracing::info!(product_id = %id, "product updated");
    Ok(product)
}

/// Retire a product: it leaves listings and cannot be bought or reviewed,
/// but stays readable by id so past orders keep their lines.
pub async fn retire(state: &AppState, id: Uuid) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let Some(product) = products::for_update(&mut tx, state.db.backend(), id).await? else {
        return Err(CatalogError::ProductNotFound);
    };
    if !products::deactivate(&mut tx, id, now_millis()).await? {
        // Already retired: nothing changes, nothing to announce.
        return Ok(());
    }
    let event = Envelope::new(
        events::SERVICE,
        events::PRODUCT_DELETED,
        ProductDeleted {
            product_id: id,
            sku: product.sku,
        },
    )?;
    let recorded = state.outbox.record(&mut tx, &event).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    state.cache.invalidate_all().await;
    tracing::info!(product_id = %id, "product retired");
    Ok(())
}

/// One product, listed or not.
pub async fn get(state: &AppState, id: Uuid) -> Result<ProductRecord> {
    let mut conn = state.db.pool().acquire().await?;
    products::by_ids(&mut conn, &[id])
        .await?
        .pop()
        .ok_or(CatalogError::ProductNotFound)
}

/// Products by id in the order asked, listed or not; unknown ids are
/// left out.
pub async fn batch(state: &AppState, ids: &[Uuid]) -> Result<Vec<ProductRecord>> {
    let mut conn = state.db.pool().acquire().await?;
    let mut found = products::by_ids(&mut conn, ids).await?;
    found.sort_by_key(|p| ids.iter().position(|id| *id == p.id));
    Ok(found)
}

/// A page of the public listing.
pub async fn search(state: &AppState, query: &ProductQuery) -> Result<SearchPage> {
    Ok(products::search(state.db.pool(), state.db.backend(), query).await?)
}

/// Fold the facet count rows that product writes append, every `every`
/// until `shutdown`; a failure is logged and tried again next time, as
/// uncompacted counts are still right, only slower to sum.
pub async fn compact_facet_counts_every(
    db: kit::db::Database,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = products::compact_facet_counts(db.pool(), db.backend()).await {
            tracing::warn!(error = %e, "compacting facet counts failed; trying again later");
        }
    }
}
