//! Placing an order: snapshot the cart at current catalogue prices, price
//! it, and record the order with `order.placed` in one transaction. The
//! Idempotency-Key makes a retried request return the same order.

use std::collections::HashMap;

use http::StatusCode;
use kit::auth::AuthUser;
use kit::clock::now_millis;
use kit::db::Backend;
use kit::events::Envelope;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::domain::address::validate_payment_method;
use crate::domain::{Money, OrderStatus, ShippingAddress};
use crate::error::{OrderError, Result};
use crate::events::{OrderPlaced, SERVICE};
use crate::storage::orders::{self, InsertOutcome, OrderLine, OrderRecord};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub shipping_address: ShippingAddress,
    /// The payment provider's token for the customer's payment method
    /// (never card data), e.g. `pm_card_visa`.
    #[schema(
        pattern = "^pm_[A-Za-z0-9_]+$",
        max_length = 255,
        example = "pm_card_visa"
    )]
    pub payment_method: String,
}

pub fn check_idempotency_key(raw: Option<&str>) -> Result<String> {
    let key = raw.ok_or(OrderError::MissingIdempotencyKey)?;
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(OrderError::BadIdempotencyKey);
    }
    Ok(key.to_string())
}

fn request_hash(req: &PlaceOrder) -> String {
    let canonical = serde_json::to_vec(req).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `ORD-YYYYMMDD-XXXXXXXX`, the tail in Crockford base32 (no I, L, O, U).
pub fn order_number(now_millis: i64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let date = time::OffsetDateTime::from_unix_timestamp(now_millis / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let tail: String = (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!(
        "ORD-{:04}{:02}{:02}-{tail}",
        date.year(),
        date.month() as u8,
        date.day()
    )
}

fn replay(existing: OrderRecord, hash: &str) -> Result<(StatusCode, OrderRecord)> {
    if existing.request_hash == hash {
        Ok((StatusCode::OK, existing))
    } else {
        Err(OrderError::IdempotencyKeyReused)
    }
}

/// The caller's cart as order lines at the catalogue's current prices: at
/// least one, all active, all in one currency.
async fn priced_cart(state: &AppState, bearer: &str) -> Result<Vec<OrderLine>> {
    let cart = state.peers.cart(bearer).await?;
    if cart.items.is_empty() {
        return Err(OrderError::EmptyCart);
    }
    let ids: Vec<Uuid> = cart.items.iter().map(|i| i.product_id).collect();
    let products: HashMap<Uuid, _> = state
        .peers
        .products(&ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut lines = Vec::with_capacity(cart.items.len());
    for item in &cart.items {
        let Some(p) = products.get(&item.product_id).filter(|p| p.is_active) else {
            return Err(OrderError::ProductUnavailable(format!(
                "product {} is no longer sold",
                item.product_id
            )));
        };
        lines.push(OrderLine {
            product_id: p.id,
            name: p.name.clone(),
            unit_price: p.price.clone(),
            quantity: item.quantity,
            line_total: Money::new(p.price.amount * item.quantity, &p.price.currency),
        });
    }
    let currency = &lines[0].unit_price.currency;
    if lines.iter().any(|l| &l.unit_price.currency != currency) {
        return Err(OrderError::ProductUnavailable(
            "the cart mixes currencies".into(),
        ));
    }
    Ok(lines)
}

pub async fn place_order(
    state: &AppState,
    user: &AuthUser,
    bearer: &str,
    idempotency_key: String,
    req: PlaceOrder,
) -> Result<(StatusCode, OrderRecord)> {
    let req = PlaceOrder {
        shipping_address: req.shipping_address.normalized(),
        ..req
    };
    let mut errors = req.shipping_address.validate();
    errors.extend(validate_payment_method(&req.payment_method));
    if !errors.is_empty() {
        return Err(OrderError::Validation(errors));
    }
    let hash = request_hash(&req);
    // A first request is the usual case: the key is looked up only when the
    // cart cannot be ordered (a request sent again usually finds it emptied
    // by its own `order.placed`, or a product since withdrawn) or when the
    // insert finds the key taken.
    let lines = match priced_cart(state, bearer).await {
        Ok(lines) => lines,
        Err(e) => {
            return match orders::by_idempotency_key(state.db.pool(), user.id, &idempotency_key)
                .await?
            {
                Some(existing) => replay(existing, &hash),
                None => Err(e),
            };
        }
    };
    let currency = lines[0].unit_price.currency.clone();
    let totals = state
        .settings
        .pricing
        .totals(lines.iter().map(|l| l.line_total.amount).sum());
    let now = now_millis();
    for _ in 0..5 {
        let order = OrderRecord {
            id: Uuid::now_v7(),
            number: order_number(now),
            customer_id: user.id,
            customer_email: user.email.clone(),
            status: OrderStatus::Pending,
            cancel_reason: None,
            currency: currency.clone(),
            subtotal: totals.subtotal,
            shipping: totals.shipping,
            tax: totals.tax,
            total: totals.total,
            lines: lines.clone(),
            shipping_address: req.shipping_address.clone(),
            payment_method: req.payment_method.clone(),
            idempotency_key: idempotency_key.clone(),
            request_hash: hash.clone(),
            paid_at: None,
            payment_deadline: now + state.settings.payment_timeout.as_millis() as i64,
            created_at: now,
            updated_at: now,
        };
        let event = Envelope::new(SERVICE, "order.placed", OrderPlaced::from(&order))?;
        let announcement = state.outbox.unwritten(&event)?;
        let outcome = match state.db.backend() {
            // One statement: atomic on its own, no transaction needed.
            Backend::Postgres => {
                let mut conn = state.db.pool().acquire().await?;
                orders::insert(&mut conn, Backend::Postgres, &order, &announcement).await?
            }
            Backend::Sqlite => {
                let mut tx = state.db.begin().await?;
                let outcome =
                    orders::insert(&mut tx, Backend::Sqlite, &order, &announcement).await?;
                match outcome {
                    InsertOutcome::Inserted => tx.commit().await?,
                    _ => tx.rollback().await?,
                }
                outcome
            }
        };
        match outcome {
            InsertOutcome::Inserted => {
                state.outbox.committed([announcement.written()]);
                metrics::counter!("orders_placed_total").increment(1);
                tracing::info!(order_id = %order.id, number = %order.number, "order placed");
                return Ok((StatusCode::CREATED, order));
            }
            InsertOutcome::DuplicateNumber => continue,
            InsertOutcome::DuplicateKey => {
                let existing =
                    orders::by_idempotency_key(state.db.pool(), user.id, &idempotency_key)
                        .await?
                        .ok_or(OrderError::NotFound)?;
                return replay(existing, &hash);
            }
        }
    }
    Err(OrderError::Database(sqlx::Error::Protocol(
        "could not allocate a unique order number".into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_have_the_documented_shape() {
        // 2026-11-29T12:00:00Z
        let n = order_number(1_795_953_600_000);
        assert!(n.starts_with("ORD-20261129-"), "{n}");
        assert_eq!(n.len(), "ORD-20261129-".len() + 8);
        assert!(
            n[13..]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(matches!(
            check_idempotency_key(None),
            Err(OrderError::MissingIdempotencyKey)
        ));
        assert!(matches!(
            check_idempotency_key(Some("")),
            Err(OrderError::BadIdempotencyKey)
        ));
        assert!(matches!(
            check_idempotency_key(Some("has space")),
            Err(OrderError::BadIdempotencyKey)
        ));
        assert_eq!(check_idempotency_key(Some("abc-123")).unwrap(), "abc-123");
    }
}
