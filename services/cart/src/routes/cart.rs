use axum::extract::{FromRequestParts, OptionalFromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kit::Problem;
use kit::auth::AuthUser;
use kit::json::{ApiJson, ApiQuery};
use kit::problem::ProblemBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::carts;
use crate::domain::{CartOwner, CheckedLine, Money, PricedCart, Quantity};
use crate::error::{CartError, Result};

/// The header that carries a guest's cart id, both ways.
pub const X_CART_ID: HeaderName = HeaderName::from_static("x-cart-id");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cart", get(get_cart).delete(clear_cart))
        .route("/api/v1/cart/items", post(add_item))
        .route(
            "/api/v1/cart/items/{product_id}",
            put(set_quantity).delete(remove_item),
        )
        .route("/api/v1/cart/merge", post(merge))
}

fn guest_cart_id(headers: &HeaderMap) -> Result<Option<Uuid>> {
    headers
        .get(X_CART_ID)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
                .ok_or(CartError::InvalidCartId)
        })
        .transpose()
}

/// Whose cart a request addresses: the signed-in customer's, else the
/// guest cart named by `X-Cart-Id`, else a new guest cart.
pub struct Shopper(pub CartOwner);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let user =
            <AuthUser as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
                .await?;
        if let Some(user) = user {
            return Ok(Shopper(CartOwner::Customer(user.id)));
        }
        Ok(Shopper(match guest_cart_id(&parts.headers)? {
            Some(id) => CartOwner::Guest(id),
            None => CartOwner::new_guest(),
        }))
    }
}

#[derive(Serialize, ToSchema)]
pub struct CartItemView {
    product_id: Uuid,
    /// The product's name when it was first added.
    name: String,
    /// The price when the product was first added; the cart is charged this.
    unit_price: Money,
    quantity: i64,
    line_total: Money,
    /// The catalogue now asks a different price.
    price_changed: bool,
    /// The product is gone, withdrawn, or has fewer in stock than this line holds.
    out_of_stock: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CartView {
    /// The guest cart id (send it back as `X-Cart-Id`), or the customer's user id.
    id: Uuid,
    items: Vec<CartItemView>,
    /// Sum of the line totals, in minor units.
    subtotal: Money,
    /// Units across all lines.
    item_count: i64,
    /// Whether the lines were checked against the catalogue just now.
    revalidated: bool,
}

impl From<CheckedLine> for CartItemView {
    fn from(c: CheckedLine) -> Self {
        Self {
            line_total: c.line.unit_price.times(c.line.quantity),
            product_id: c.line.product_id,
            name: c.line.name,
            unit_price: c.line.unit_price,
            quantity: c.line.quantity,
            price_changed: c.price_changed,
            out_of_stock: c.out_of_stock,
        }
    }
}

impl From<PricedCart> for CartView {
    fn from(c: PricedCart) -> Self {
        Self {
            id: c.id,
            items: c.lines.into_iter().map(CartItemView::from).collect(),
            subtotal: c.subtotal,
            item_count: c.item_count,
            revalidated: c.revalidated,
        }
    }
}

/// A cart answer; a guest's also carries the cart id in `X-Cart-Id`.
pub struct CartResponse {
    guest: bool,
    cart: PricedCart,
}

impl CartResponse {
    fn new(owner: CartOwner, cart: PricedCart) -> Self {
        Self {
            guest: owner.is_guest(),
            cart,
        }
    }
}

impl IntoResponse for CartResponse {
    fn into_response(self) -> Response {
        let id = self.cart.id;
        let mut res = Json(CartView::from(self.cart)).into_response();
        if self.guest
            && let Ok(v) = HeaderValue::from_str(&id.to_string())
        {
            res.headers_mut().insert(X_CART_ID, v);
        }
        res
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemRequest {
    product_id: Uuid,
    /// 1 to 99; added to what the cart already holds.
    #[schema(minimum = 1, maximum = 99)]
    quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityRequest {
    /// 1 to 99.
    #[schema(minimum = 1, maximum = 99)]
    quantity: i64,
}

fn quantity(n: i64) -> Result<Quantity> {
    Quantity::parse(n).map_err(|e| CartError::Validation(vec![e]))
}

/// A product id from the path; one that is not a UUID is not in any cart.
fn product_in_path(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| CartError::NotInCart)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// `false`: the lines as kept, not checked against the catalogue
    /// (`revalidated` is then false), for callers that ask the catalogue
    /// themselves. Default `true`.
    check: Option<bool>,
}

/// The cart, each line checked against the catalogue.
#[utoipa::path(get, path = "/api/v1/cart", tag = "cart", security((), ("bearer" = [])),
    params(ViewQuery, ("X-Cart-Id" = Option<Uuid>, Header, description = "A guest's cart id")),
    responses((status = 200, body = CartView, headers(("X-Cart-Id" = Uuid, description = "The guest's cart id"))),
        (status = 400, body = ProblemBody), (status = 401, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn get_cart(
    State(state): State<AppState>,
    Shopper(owner): Shopper,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<CartResponse> {
    let cart = match q.check {
        Some(false) => carts::kept(&state, owner).await?,
        _ => carts::view(&state, owner).await?,
    };
    Ok(CartResponse::new(owner, cart))
}

/// Put a product in the cart (or more of it).
#[utoipa::path(post, path = "/api/v1/cart/items", tag = "cart", security((), ("bearer" = [])),
    params(("X-Cart-Id" = Option<Uuid>, Header, description = "A guest's cart id; a new one is made if absent")),
    request_body = AddItemRequest,
    responses((status = 200, body = CartView, headers(("X-Cart-Id" = Uuid, description = "The guest's cart id"))),
        (status = 404, body = ProblemBody, description = "Unknown or withdrawn product"),
        (status = 409, body = ProblemBody, description = "Not enough in stock, or the cart is full"),
        (status = 422, body = ProblemBody, description = "Quantity outside 1–99, or the line would exceed 99"),
        (status = 503, body = ProblemBody, description = "The catalogue cannot be reached; the cart is unchanged")))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn add_item(
    State(state): State<AppState>,
    Shopper(owner): Shopper,
    ApiJson(req): ApiJson<AddItemRequest>,
) -> Result<CartResponse> {
    let quantity = quantity(req.quantity)?;
    let cart = carts::add_item(&state, owner, req.product_id, quantity).await?;
    Ok(CartResponse::new(owner, cart))
}

/// Set how many of a product the cart holds.
#[utoipa::path(put, path = "/api/v1/cart/items/{product_id}", tag = "cart", security((), ("bearer" = [])),
    params(("product_id" = Uuid, Path), ("X-Cart-Id" = Option<Uuid>, Header, description = "A guest's cart id")),
    request_body = SetQuantityRequest,
    responses((status = 200, body = CartView), (status = 404, body = ProblemBody), (status = 409, body = ProblemBody),
        (status = 422, body = ProblemBody), (status = 503, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn set_quantity(
    State(state): State<AppState>,
    Shopper(owner): Shopper,
    Path(product_id): Path<String>,
    ApiJson(req): ApiJson<SetQuantityRequest>,
) -> Result<CartResponse> {
    let quantity = quantity(req.quantity)?;
    let product_id = product_in_path(&product_id)?;
    let cart = carts::set_quantity(&state, owner, product_id, quantity).await?;
    Ok(CartResponse::new(owner, cart))
}

/// Take a product out of the cart (answered the same if it was not there).
#[utoipa::path(delete, path = "/api/v1/cart/items/{product_id}", tag = "cart", security((), ("bearer" = [])),
    params(("product_id" = Uuid, Path), ("X-Cart-Id" = Option<Uuid>, Header, description = "A guest's cart id")),
    responses((status = 200, body = CartView), (status = 400, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn remove_item(
    State(state): State<AppState>,
    Shopper(owner): Shopper,
    Path(product_id): Path<String>,
) -> Result<CartResponse> {
    let cart = match Uuid::parse_str(&product_id) {
        Ok(product_id) => carts::remove_item(&state, owner, product_id).await?,
        Err(_) => carts::view(&state, owner).await?,
    };
    Ok(CartResponse::new(owner, cart))
}

/// Empty the cart.
#[utoipa::path(delete, path = "/api/v1/cart", tag = "cart", security((), ("bearer" = [])),
    params(("X-Cart-Id" = Option<Uuid>, Header, description = "A guest's cart id")),
    responses((status = 200, body = CartView), (status = 400, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn clear_cart(
    State(state): State<AppState>,
    Shopper(owner): Shopper,
) -> Result<CartResponse> {
    Ok(CartResponse::new(owner, carts::clear(&state, owner).await?))
}

/// Fold the guest cart named by `X-Cart-Id` into the signed-in customer's
/// cart (quantities add up, at most 99 a line) and delete the guest cart.
#[utoipa::path(post, path = "/api/v1/cart/merge", tag = "cart", security(("bearer" = [])),
    params(("X-Cart-Id" = Uuid, Header, description = "The guest's cart id")),
    responses((status = 200, body = CartView), (status = 400, body = ProblemBody), (status = 401, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn merge(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<CartResponse> {
    let guest = guest_cart_id(&headers)?.ok_or(CartError::MissingCartId)?;
    let owner = CartOwner::Customer(user.id);
    Ok(CartResponse::new(
        owner,
        carts::merge(&state, guest, user.id).await?,
    ))
}
