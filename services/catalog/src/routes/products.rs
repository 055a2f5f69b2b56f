use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::{ApiJson, ApiQuery};
use kit::problem::ProblemBody;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cached_json;
use crate::cache::digest;
use crate::domain::search::{ListParams, ProductQuery, parse_ids};
use crate::domain::{Image, Money, NewProduct};
use crate::error::{CatalogError, Result};
use crate::storage::products::{ProductRecord, SearchPage};
use crate::{AppState, MANAGE, products};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list).post(create))
        .route(
            "/api/v1/products/{id}",
            get(show).put(replace).delete(retire),
        )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RatingView {
    /// Mean of all ratings, two decimals; 0 without reviews.
    average: f64,
    count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price: Money,
    /// Units on hand.
    stock: i64,
    category_id: Uuid,
    images: Vec<Image>,
    /// False once retired: no longer listed or sold.
    is_active: bool,
    rating: RatingView,
    created_at: String,
    updated_at: String,
}

impl From<ProductRecord> for ProductView {
    fn from(p: ProductRecord) -> Self {
        Self {
            rating: RatingView {
                average: p.average_rating(),
                count: p.rating_count,
            },
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: p.price,
            stock: p.stock,
            category_id: p.category_id,
            images: p.images,
            is_active: p.is_active,
            created_at: kit::clock::rfc3339(p.created_at),
            updated_at: kit::clock::rfc3339(p.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryFacet {
    category_id: Uuid,
    name: String,
    slug: String,
    /// Matching products directly in this category.
    count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PriceBandFacet {
    /// Lowest price in the band (minor units, inclusive).
    min: i64,
    /// Price the band ends before (exclusive); null for the last band.
    max: Option<i64>,
    count: i64,
}

/// Counts of the matching products, by category and by price band.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Facets {
    categories: Vec<CategoryFacet>,
    price: Vec<PriceBandFacet>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    items: Vec<ProductView>,
    /// Matching products on all pages.
    total: i64,
    /// The page number; null when the page was asked for by cursor.
    page: Option<u32>,
    page_size: u32,
    /// Pass as `cursor` for the next page; null on the last page and for
    /// relevance order.
    next_cursor: Option<String>,
    facets: Facets,
}

impl ProductPage {
    fn of(query: &ProductQuery, found: SearchPage) -> Self {
        let next_cursor = match found.items.last() {
            Some(last) if found.more && query.sort.supports_cursor() => Some(
                crate::domain::Cursor {
                    sort: query.sort,
                    key: last.sort_key(query.sort),
                    id: last.id,
                }
                .encode(),
            ),
            _ => None,
        };
        Self {
            items: found.items.into_iter().map(ProductView::from).collect(),
            total: found.total,
            page: query.cursor.is_none().then_some(query.page),
            page_size: query.page_size,
            next_cursor,
            facets: Facets {
                categories: found
                    .categories
                    .into_iter()
                    .map(|c| CategoryFacet {
                        category_id: c.id,
                        name: c.name,
                        slug: c.slug,
                        count: c.count,
                    })
                    .collect(),
                price: found
                    .price_bands
                    .into_iter()
                    .map(|b| PriceBandFacet {
                        min: b.min,
                        max: b.max,
                        count: b.count,
                    })
                    .collect(),
            },
        }
    }
}

fn product_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| CatalogError::ProductNotFound)
}

/// List and search listed products; or, with `ids`, fetch up to 100
/// products by id (listed or not, for carts).
#[utoipa::path(get, path = "/api/v1/products", tag = "products", params(ListParams),
    responses((status = 200, body = ProductPage), (status = 422, body = ProblemBody)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    if let Some(raw) = &params.ids {
        let ids = parse_ids(raw).map_err(|e| CatalogError::Validation(vec![e]))?;
        let key = format!(
            "batch:{}",
            digest(
                ids.iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
                    .as_bytes()
            )
        );
        let cached = state
            .cache
            .get_or_load(&key, || async {
                let found = products::batch(&state, &ids).await?;
                let page = ProductPage {
                    total: found.len() as i64,
                    items: found.into_iter().map(ProductView::from).collect(),
                    page: Some(1),
                    page_size: ids.len() as u32,
                    next_cursor: None,
                    facets: Facets::default(),
                };
                Ok::<_, CatalogError>(serde_json::to_vec(&page)?)
            })
            .await?;
        return Ok(cached_json(cached));
    }
    let query = ProductQuery::parse(&params)?;
    let key = format!("list:{}", digest(&serde_json::to_vec(&query)?));
    let cached = state
        .cache
        .get_or_load(&key, || async {
            let found = products::search(&state, &query).await?;
            Ok::<_, CatalogError>(serde_json::to_vec(&ProductPage::of(&query, found))?)
        })
        .await?;
    Ok(cached_json(cached))
}

/// One product, listed or not.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products", params(("id" = String, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 404, body = ProblemBody)))]
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let id = product_id(&id)?;
    let cached = state
        .cache
        .get_or_load(&format!("product:{id}"), || async {
            let product = products::get(&state, id).await?;
            Ok::<_, CatalogError>(serde_json::to_vec(&ProductView::from(product))?)
        })
        .await?;
    Ok(cached_json(cached))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "products", security(("bearer" = [])), request_body = NewProduct,
    responses((status = 201, body = ProductView), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<NewProduct>,
) -> Result<Response> {
    user.require_permission(MANAGE)?;
    let product = products::create(&state, &input).await?;
    let location = HeaderValue::from_str(&format!("/api/v1/products/{}", product.id)).ok();
    let mut res = (StatusCode::CREATED, Json(ProductView::from(product))).into_response();
    if let Some(location) = location {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

/// Replace a product (admin): every field is set from the body.
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "products", params(("id" = String, Path, description = "Product id")), security(("bearer" = [])), request_body = NewProduct,
    responses((status = 200, body = ProductView), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn replace(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NewProduct>,
) -> Result<Json<ProductView>> {
    user.require_permission(MANAGE)?;
    let id = product_id(&id)?;
    Ok(Json(products::replace(&state, id, &input).await?.into()))
}

/// Retire a product (admin): it leaves listings but stays readable by id.
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "products", params(("id" = String, Path, description = "Product id")), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn retire(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    user.require_permission(MANAGE)?;
    products::retire(&state, product_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
