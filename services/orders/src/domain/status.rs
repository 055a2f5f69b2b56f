use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    AwaitingPayment,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Processing => "processing",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// May an order move from `self` to `next`?
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, AwaitingPayment)
                // Payment can be seen before the stock reservation is (two queues).
                | (Pending, Confirmed)
                | (AwaitingPayment, Confirmed)
                | (Confirmed, Processing)
                | (Processing, Shipped)
                | (Shipped, Delivered)
                | (Pending | AwaitingPayment | Confirmed | Processing, Cancelled)
        )
    }

    /// Has the customer paid (a cancellation then needs a refund)?
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Confirmed
                | OrderStatus::Processing
                | OrderStatus::Shipped
                | OrderStatus::Delivered
        )
    }

    /// Is checkout over: paid (confirmed or later) or cancelled?
    pub fn is_settled(self) -> bool {
        !matches!(self, OrderStatus::Pending | OrderStatus::AwaitingPayment)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Delivered | OrderStatus::Cancelled)
    }

    /// The event announcing that an order entered this status, if any.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            OrderStatus::Confirmed => Some("order.confirmed"),
            OrderStatus::Processing => Some("order.processing"),
            OrderStatus::Shipped => Some("order.shipped"),
            OrderStatus::Delivered => Some("order.delivered"),
            OrderStatus::Cancelled => Some("order.cancelled"),
            OrderStatus::Pending | OrderStatus::AwaitingPayment => None,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => OrderStatus::Pending,
            "awaiting_payment" => OrderStatus::AwaitingPayment,
            "confirmed" => OrderStatus::Confirmed,
            "processing" => OrderStatus::Processing,
            "shipped" => OrderStatus::Shipped,
            "delivered" => OrderStatus::Delivered,
            "cancelled" => OrderStatus::Cancelled,
            other => return Err(format!("unknown status `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;

    #[test]
    fn the_happy_path_is_allowed() {
        for (a, b) in [
            (Pending, AwaitingPayment),
            (AwaitingPayment, Confirmed),
            (Confirmed, Processing),
            (Processing, Shipped),
            (Shipped, Delivered),
        ] {
            assert!(a.can_become(b), "{a} -> {b}");
        }
    }

    #[test]
    fn no_cancelling_after_shipping_and_no_skipping() {
        assert!(!Shipped.can_become(Cancelled));
        assert!(!Delivered.can_become(Cancelled));
        assert!(!Cancelled.can_become(Confirmed));
        assert!(!Confirmed.can_become(Shipped));
        assert!(!AwaitingPayment.can_become(Processing));
        assert!(Processing.can_become(Cancelled));
    }

    #[test]
    fn round_trips_as_snake_case() {
        assert_eq!(
            "awaiting_payment".parse::<super::OrderStatus>().unwrap(),
            AwaitingPayment
        );
        assert_eq!(
            serde_json::to_string(&AwaitingPayment).unwrap(),
            "\"awaiting_payment\""
        );
    }
}
