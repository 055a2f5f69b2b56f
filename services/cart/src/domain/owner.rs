use uuid::Uuid;

/// Whose cart a request is about. A signed-in customer has exactly one cart,
/// found by their user id; a guest's cart is found by the id the service
/// handed out in `X-Cart-Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CartOwner {
    Customer(Uuid),
    Guest(Uuid),
}

impl CartOwner {
    /// A cart for a guest who has none yet.
    pub fn new_guest() -> Self {
        CartOwner::Guest(Uuid::now_v7())
    }

    /// The cart's id on the wire: the guest's cart id, or the customer's
    /// user id (a customer has one cart).
    pub fn cart_id(&self) -> Uuid {
        match self {
            CartOwner::Customer(id) | CartOwner::Guest(id) => *id,
        }
    }

    pub fn is_guest(&self) -> bool {
        matches!(self, CartOwner::Guest(_))
    }

    /// The store's name for this cart: `user:<uuid>` or `guest:<uuid>`, so a
    /// guest id can never address a customer's cart.
    pub fn storage_key(&self) -> String {
        match self {
            CartOwner::Customer(id) => format!("user:{id}"),
            CartOwner::Guest(id) => format!("guest:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_and_customers_never_share_a_key() {
        let id = Uuid::now_v7();
        assert_ne!(
            CartOwner::Customer(id).storage_key(),
            CartOwner::Guest(id).storage_key()
        );
        assert_eq!(CartOwner::Guest(id).cart_id(), id);
    }
}
