use uuid::Uuid;

use super::{Line, Money};
use crate::catalog::Snapshot;

/// A line after it was compared with the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLine {
    pub line: Line,
    /// The catalogue's price is no longer the one kept on the line.
    pub price_changed: bool,
    /// The product vanished, was withdrawn, or has fewer in stock than the
    /// line holds.
    pub out_of_stock: bool,
}

/// A cart with its totals, in integer minor units of the kept line prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedCart {
    pub id: Uuid,
    pub lines: Vec<CheckedLine>,
    pub subtotal: Money,
    /// Units across all lines.
    pub item_count: i64,
    /// Whether the lines were compared with the catalogue (false when it
    /// could not be reached).
    pub revalidated: bool,
}

/// Compare `lines` with what the catalogue said (`None`: it did not answer)
/// and total them. A line whose product was not asked about (added by a
/// concurrent request) is left unflagged rather than called vanished.
pub fn price(id: Uuid, lines: Vec<Line>, catalog: Option<&Snapshot>, currency: &str) -> PricedCart {
    let currency = lines
        .first()
        .map(|l| l.unit_price.currency.clone())
        .unwrap_or_else(|| currency.to_string());
    let mut subtotal = 0i64;
    let mut item_count = 0i64;
    let lines = lines
        .into_iter()
        .map(|line| {
            subtotal =
                subtotal.saturating_add(line.unit_price.amount.saturating_mul(line.quantity));
            item_count = item_count.saturating_add(line.quantity);
            let (price_changed, out_of_stock) = match catalog {
                Some(snapshot) if snapshot.asked(line.product_id) => {
                    match snapshot.product(line.product_id) {
                        Some(p) => (
                            p.price != line.unit_price,
                            !p.is_active || p.stock < line.quantity,
                        ),
                        None => (false, true),
                    }
                }
                _ => (false, false),
            };
            CheckedLine {
                line,
                price_changed,
                out_of_stock,
            }
        })
        .collect();
    PricedCart {
        id,
        lines,
        subtotal: Money::new(subtotal, &currency),
        item_count,
        revalidated: catalog.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Product;

    fn line(id: Uuid, amount: i64, quantity: i64) -> Line {
        Line {
            product_id: id,
            name: "Mug".into(),
            unit_price: Money::new(amount, "EUR"),
            quantity,
            added_at: 1,
        }
    }

    fn product(id: Uuid, amount: i64, stock: i64, is_active: bool) -> Product {
        Product {
            id,
            name: "Mug".into(),
            price: Money::new(amount, "EUR"),
            stock,
            is_active,
        }
    }

    #[test]
    fn totals_use_the_kept_prices() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let cart = price(
            Uuid::now_v7(),
            vec![line(a, 1999, 2), line(b, 500, 3)],
            None,
            "USD",
        );
        assert_eq!(cart.subtotal, Money::new(5498, "EUR"));
        assert_eq!(cart.item_count, 5);
        assert!(!cart.revalidated);
        assert!(
            cart.lines
                .iter()
                .all(|l| !l.price_changed && !l.out_of_stock)
        );
    }

    #[test]
    fn empty_cart_is_in_the_shop_currency() {
        let cart = price(Uuid::now_v7(), vec![], None, "USD");
        assert_eq!(cart.subtotal, Money::new(0, "USD"));
    }

    #[test]
    fn flags_price_changes_and_shortages() {
        let (a, b, c, d, late) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let snapshot = Snapshot::new(
            &[a, b, c, d],
            vec![
                product(a, 2499, 10, true),
                product(b, 500, 1, true),
                product(c, 100, 10, false),
            ],
        );
        let cart = price(
            Uuid::now_v7(),
            vec![
                line(a, 1999, 1),
                line(b, 500, 2),
                line(c, 100, 1),
                line(d, 100, 1),
                line(late, 100, 1),
            ],
            Some(&snapshot),
            "USD",
        );
        let flags: Vec<(bool, bool)> = cart
            .lines
            .iter()
            .map(|l| (l.price_changed, l.out_of_stock))
            .collect();
        assert_eq!(
            flags,
            vec![
                (true, false),
                (false, true),
                (false, true),
                (false, true),
                (false, false)
            ]
        );
        assert_eq!(cart.subtotal.amount, 1999 + 1000 + 100 + 100 + 100);
        assert!(cart.revalidated);
    }
}
