//! What killing the shop mid-checkout must not change, as its customers
//! see it once it is back: shared by the tests that kill it.

use std::time::Duration;

use serde_json::Value;

pub async fn get(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let res = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {url}");
    res.json().await.unwrap()
}

/// Each `(order id, its customer's token)`: the order is confirmed, with
/// exactly one payment, succeeded, and its customer was told exactly once.
pub async fn every_order_confirmed_charged_and_told_once(
    http: &reqwest::Client,
    base: &str,
    orders: &[(String, String)],
) {
    for (order, token) in orders {
        let mut status = Value::Null;
        for _ in 0..12 {
            status =
                get(http, &format!("{base}/api/v1/orders/{order}?wait=5"), token).await["status"]
                    .clone();
            if status == "confirmed" {
                break;
            }
        }
        assert_eq!(status, "confirmed", "order {order}");
        let payments = get(
            http,
            &format!("{base}/api/v1/payments?order_id={order}"),
            token,
        )
        .await;
        let items = payments["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "one payment for {order}: {payments}");
        assert_eq!(items[0]["status"], "succeeded", "{payments}");
    }
    for (order, token) in orders {
        let mut told = 0;
        for _ in 0..100 {
            let feed = get(http, &format!("{base}/api/v1/notifications"), token).await;
            told = feed["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["kind"] == "order_confirmed")
                .count();
            if told > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(told, 1, "one confirmation for {order}");
    }
}
