//! The catalog's stock reservation called directly, without a broker in
//! between, so every case is decided by the reservation code alone: all or
//! nothing, never below zero, once per order however often `order.placed`
//! arrives (also concurrently), nothing for an order cancelled first. On
//! PostgreSQL an order of one line takes the one-statement path and
//! everything else the transactional one, so both are covered here.

use std::sync::Arc;

use catalog::stock::{self, Reservation, StockLine};
use emporium_tests::Backends;
use kit::auth::TokenVerifier;
use kit::events::Envelope;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

struct Stock {
    state: catalog::AppState,
}

impl Stock {
    /// A catalog with the demo products, its workers not started: the
    /// outbox keeps every event it records.
    async fn open(b: &Backends) -> Stock {
        let verifier = TokenVerifier::from_jwks(
            &jsonwebtoken::jwk::JwkSet { keys: vec![] },
            "emporium-identity",
            "emporium",
        );
        let service = catalog::Catalog::build(
            catalog::Settings::default(),
            Arc::new(verifier),
            catalog::Backends {
                db: b.database("catalog").await,
                cache: b.cache().await,
                bus: b.bus().await,
            },
        )
        .await
        .expect("catalog starts");
        catalog::demo::seed(&service.state).await.expect("demo");
        Stock {
            state: service.state,
        }
    }

    /// A demo product, its stock set to `stock`.
    async fn product(&self, nth: i64, stock: i64) -> Uuid {
        let row = sqlx::query("SELECT id FROM products ORDER BY sku LIMIT 1 OFFSET $1")
            .bind(nth)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap();
        let id: String = row.try_get("id").unwrap();
        sqlx::query("UPDATE products SET stock = $1, is_active = $2 WHERE id = $3")
            .bind(stock)
            .bind(true)
            .bind(&id)
            .execute(self.state.db.pool())
            .await
            .unwrap();
        id.parse().unwrap()
    }

    async fn stock(&self, id: Uuid) -> i64 {
        sqlx::query("SELECT stock FROM products WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
            .try_get("stock")
            .unwrap()
    }

    /// Reserve as the consumer would, retried as the bus would retry a
    /// transient failure (a racing copy of the same event).
    async fn reserve(&self, event: &Envelope, order_id: Uuid, lines: &[StockLine]) -> Reservation {
        for _ in 0..20 {
            match stock::reserve(&self.state, event, order_id, lines).await {
                Ok(r) => return r,
                Err(e) => eprintln!("retrying the reservation of {order_id}: {e}"),
            }
        }
        panic!("the reservation of {order_id} kept failing");
    }

    /// The events recorded about `order_id`: routing key and payload.
    async fn events(&self, order_id: Uuid) -> Vec<(String, Value)> {
        let rows = sqlx::query("SELECT routing_key, envelope FROM outbox_events ORDER BY id")
            .fetch_all(self.state.db.pool())
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let e: Envelope =
                    serde_json::from_str(&r.try_get::<String, _>("envelope").unwrap()).unwrap();
                (r.try_get::<String, _>("routing_key").unwrap(), e.payload)
            })
            .filter(|(_, p)| p["order_id"] == json!(order_id))
            .collect()
    }
}

fn placed(order_id: Uuid, lines: &[StockLine]) -> Envelope {
    Envelope::new(
        "orders",
        "order.placed",
        json!({"order_id": order_id, "customer_id": Uuid::now_v7(), "lines": lines}),
    )
    .unwrap()
}

fn line(product_id: Uuid, quantity: i64) -> StockLine {
    StockLine {
        product_id,
        quantity,
    }
}

#[tokio::test]
async fn an_order_is_reserved_once_however_often_it_is_placed() {
    let b = Backends::new();
    let s = Stock::open(&b).await;
    let mug = s.product(0, 5).await;
    let order = Uuid::now_v7();
    let lines = [line(mug, 2)];
    let event = placed(order, &lines);

    assert_eq!(
        s.reserve(&event, order, &lines).await,
        Reservation::Reserved
    );
    assert_eq!(s.stock(mug).await, 3);
    // The same event again, and the order placed again under a new event id.
    assert_eq!(
        s.reserve(&event, order, &lines).await,
        Reservation::AlreadyHandled
    );
    let again = placed(order, &lines);
    assert_eq!(
        s.reserve(&again, order, &lines).await,
        Reservation::AlreadyHandled
    );
    assert_eq!(s.stock(mug).await, 3);
    assert_eq!(
        s.events(order).await,
        [(
            "stock.reserved".to_string(),
            json!({"order_id": order, "lines": [{"product_id": mug, "quantity": 2}]})
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_order_placed_at_once_reserve_once() {
    let b = Backends::new();
    let s = Arc::new(Stock::open(&b).await);
    let mug = s.product(0, 10).await;
    let order = Uuid::now_v7();
    let lines = [line(mug, 3)];
    let event = placed(order, &lines);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (s, event, lines) = (s.clone(), event.clone(), lines.clone());
            tokio::spawn(async move { s.reserve(&event, order, &lines).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in copies {
        outcomes.push(c.await.unwrap());
    }
    let reserved = outcomes
        .iter()
        .filter(|o| **o == Reservation::Reserved)
        .count();
    assert_eq!(reserved, 1, "{outcomes:?}");
    assert_eq!(s.stock(mug).await, 7);
    assert_eq!(s.events(order).await.len(), 1);
}

#[tokio::test]
async fn an_order_cancelled_before_it_is_placed_reserves_nothing() {
    let b = Backends::new();
    let s = Stock::open(&b).await;
    let mug = s.product(0, 5).await;
    let order = Uuid::now_v7();
    let cancelled = Envelope::new(
        "orders",
        "order.cancelled",
        json!({"order_id": order, "reason": "customer_request"}),
    )
    .unwrap();
    assert!(
        !stock::release(&s.state, &cancelled, order).await.unwrap(),
        "nothing was held"
    );
    let lines = [line(mug, 1)];
    assert_eq!(
        s.reserve(&placed(order, &lines), order, &lines).await,
        Reservation::AlreadyHandled
    );
    assert_eq!(s.stock(mug).await, 5);
    assert_eq!(s.events(order).await, []);
}

#[tokio::test]
async fn too_little_or_inactive_stock_rejects_and_takes_nothing() {
    let b = Backends::new();
    let s = Stock::open(&b).await;
    let mug = s.product(0, 1).await;
    let order = Uuid::now_v7();
    let lines = [line(mug, 2)];
    let event = placed(order, &lines);
    assert_eq!(
        s.reserve(&event, order, &lines).await,
        Reservation::Rejected
    );
    assert_eq!(
        s.reserve(&event, order, &lines).await,
        Reservation::AlreadyHandled
    );
    assert_eq!(s.stock(mug).await, 1);
    assert_eq!(
        s.events(order).await,
        [(
            "stock.rejected".to_string(),
            json!({"order_id": order, "reason": "out_of_stock",
                   "lines": [{"product_id": mug, "requested": 2, "available": 1}]})
        )]
    );

    sqlx::query("UPDATE products SET is_active = $1 WHERE id = $2")
        .bind(false)
        .bind(mug.to_string())
        .execute(s.state.db.pool())
        .await
        .unwrap();
    let inactive = Uuid::now_v7();
    let lines = [line(mug, 1)];
    assert_eq!(
        s.reserve(&placed(inactive, &lines), inactive, &lines).await,
        Reservation::Rejected
    );
    assert_eq!(s.stock(mug).await, 1);
}

#[tokio::test]
async fn an_order_of_several_lines_takes_all_or_nothing() {
    let b = Backends::new();
    let s = Stock::open(&b).await;
    let (mug, pen) = (s.product(0, 3).await, s.product(1, 1).await);

    let short = Uuid::now_v7();
    let lines = [line(mug, 2), line(pen, 2)];
    assert_eq!(
        s.reserve(&placed(short, &lines), short, &lines).await,
        Reservation::Rejected
    );
    assert_eq!((s.stock(mug).await, s.stock(pen).await), (3, 1));

    let fits = Uuid::now_v7();
    // Repeated products count together.
    let lines = [line(pen, 1), line(mug, 1), line(mug, 1)];
    assert_eq!(
        s.reserve(&placed(fits, &lines), fits, &lines).await,
        Reservation::Reserved
    );
    assert_eq!((s.stock(mug).await, s.stock(pen).await), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_orders_for_the_last_five_units_reserve_exactly_five() {
    let b = Backends::new();
    let s = Arc::new(Stock::open(&b).await);
    let mug = s.product(0, 5).await;
    let orders: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let order = Uuid::now_v7();
                let lines = [line(mug, 1)];
                s.reserve(&placed(order, &lines), order, &lines).await
            })
        })
        .collect();
    let mut reserved = 0;
    for o in orders {
        match o.await.unwrap() {
            Reservation::Reserved => reserved += 1,
            Reservation::Rejected => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reserved, 5);
    assert_eq!(s.stock(mug).await, 0);
}
