//! What a shopper can do with a cart. Each operation asks the catalogue at
//! most once (one batched call covering every line), changes the store at
//! most once, and answers with the cart priced and checked.

use uuid::Uuid;

use crate::AppState;
use crate::catalog::Snapshot;
use crate::domain::pricing::price;
use crate::domain::{CartOwner, Line, PricedCart, Quantity};
use crate::error::{CartError, Result};
use crate::store::{AddOutcome, SetOutcome};

fn product_ids(lines: &[Line]) -> Vec<Uuid> {
    lines.iter().map(|l| l.product_id).collect()
}

fn priced(
    state: &AppState,
    owner: CartOwner,
    lines: Vec<Line>,
    check: Option<&Snapshot>,
) -> PricedCart {
    price(owner.cart_id(), lines, check, &state.settings.currency)
}

/// Price `lines` after checking them with the catalogue; if it cannot be
/// reached, the stored lines are shown unchecked.
async fn revalidated(state: &AppState, owner: CartOwner, lines: Vec<Line>) -> PricedCart {
    let check = state.catalog.products(&product_ids(&lines)).await.ok();
    priced(state, owner, lines, check.as_ref())
}

/// The cart as it is now (empty if it does not exist or has expired).
pub async fn view(state: &AppState, owner: CartOwner) -> Result<PricedCart> {
    let lines = state.store.lines(owner).await?;
    Ok(revalidated(state, owner, lines).await)
}

/// The cart as kept, without asking the catalogue: for a caller that asks
/// the catalogue itself anyway (orders, pricing an order).
pub async fn kept(state: &AppState, owner: CartOwner) -> Result<PricedCart> {
    let lines = state.store.lines(owner).await?;
    Ok(priced(state, owner, lines, None))
}

/// Put `quantity` more of a product in the cart, if the catalogue has it
/// for sale and in stock. The line keeps the name and price seen when it
/// was first added.
pub async fn add_item(
    state: &AppState,
    owner: CartOwner,
    product_id: Uuid,
    quantity: Quantity,
) -> Result<PricedCart> {
    let lines = state.store.lines(owner).await?;
    let mut ids = product_ids(&lines);
    let new_line = !ids.contains(&product_id);
    if new_line {
        if lines.len() >= state.settings.max_lines {
            return Err(CartError::CartFull);
        }
        ids.push(product_id);
    }
    let check = state.catalog.products(&ids).await?;
    let product = check
        .available(product_id)
        .ok_or(CartError::ProductNotFound)?;
    if let Some(first) = lines.first()
        && new_line
        && first.unit_price.currency != product.price.currency
    {
        return Err(CartError::CurrencyMismatch {
            cart: first.unit_price.currency.clone(),
            product: product.price.currency.clone(),
        });
    }
    let line = Line {
        product_id,
        name: product.name.clone(),
        unit_price: product.price.clone(),
        quantity: quantity.get(),
        added_at: kit::clock::now_millis(),
    };
    match state.store.add(owner, line, product.stock).await? {
        AddOutcome::Added(lines) => Ok(priced(state, owner, lines, Some(&check))),
        AddOutcome::OverQuantityCap { in_cart } => Err(CartError::QuantityCap { in_cart }),
        AddOutcome::NotEnoughStock { in_cart } => Err(CartError::NotEnoughStock {
            available: product.stock,
            in_cart,
        }),
        AddOutcome::CartFull => Err(CartError::CartFull),
    }
}

/// Set how many of a product the cart holds. Lowering always works;
/// raising needs the catalogue to vouch for the product and its stock.
pub async fn set_quantity(
    state: &AppState,
    owner: CartOwner,
    product_id: Uuid,
    quantity: Quantity,
) -> Result<PricedCart> {
    let lines = state.store.lines(owner).await?;
    if !lines.iter().any(|l| l.product_id == product_id) {
        return Err(CartError::NotInCart);
    }
    let check = state.catalog.products(&product_ids(&lines)).await;
    let allowed = match &check {
        Ok(snapshot) => snapshot.available(product_id).map(|p| p.stock).unwrap_or(0),
        Err(_) => 0,
    };
    match state
        .store
        .set_quantity(owner, product_id, quantity.get(), allowed)
        .await?
    {
        SetOutcome::Updated(lines) => Ok(priced(state, owner, lines, check.ok().as_ref())),
        SetOutcome::NotInCart => Err(CartError::NotInCart),
        SetOutcome::Refused { in_cart } => Err(match check {
            Err(e) => CartError::Catalog(e),
            Ok(snapshot) => match snapshot.available(product_id) {
                None => CartError::ProductNotFound,
                Some(p) => CartError::NotEnoughStock {
                    available: p.stock,
                    in_cart,
                },
            },
        }),
    }
}

/// Take a product out of the cart (nothing happens if it is not there).
pub async fn remove_item(
    state: &AppState,
    owner: CartOwner,
    product_id: Uuid,
) -> Result<PricedCart> {
    let lines = state.store.remove(owner, product_id).await?;
    Ok(revalidated(state, owner, lines).await)
}

/// Empty the cart.
pub async fn clear(state: &AppState, owner: CartOwner) -> Result<PricedCart> {
    state.store.clear(owner).await?;
    Ok(priced(state, owner, Vec::new(), Some(&Snapshot::default())))
}

/// Fold a guest's cart into a signed-in customer's and delete it.
pub async fn merge(state: &AppState, guest_cart: Uuid, customer: Uuid) -> Result<PricedCart> {
    let owner = CartOwner::Customer(customer);
    let lines = state
        .store
        .merge(CartOwner::Guest(guest_cart), owner)
        .await?;
    Ok(revalidated(state, owner, lines).await)
}
