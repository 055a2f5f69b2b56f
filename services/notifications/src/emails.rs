//! Rendering a notification — subject, HTML and plain text — from the
//! templates in `templates/`, compiled into the binary. HTML templates
//! escape every value; `{{ x|money }}` prints a money object for people.

use std::sync::Arc;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, UndefinedBehavior, context};
use serde::Serialize;

use crate::events::{Kind, OrderCancelled, OrderUpdate, PaymentRefunded};
use crate::money::Money;

const TEMPLATES: &[(&str, &str)] = &[
    ("subject.txt", include_str!("../templates/subject.txt")),
    ("layout.html", include_str!("../templates/layout.html")),
    ("layout.txt", include_str!("../templates/layout.txt")),
    (
        "order_lines.html",
        include_str!("../templates/order_lines.html"),
    ),
    (
        "order_lines.txt",
        include_str!("../templates/order_lines.txt"),
    ),
    ("welcome.html", include_str!("../templates/welcome.html")),
    ("welcome.txt", include_str!("../templates/welcome.txt")),
    (
        "order_confirmed.html",
        include_str!("../templates/order_confirmed.html"),
    ),
    (
        "order_confirmed.txt",
        include_str!("../templates/order_confirmed.txt"),
    ),
    (
        "order_shipped.html",
        include_str!("../templates/order_shipped.html"),
    ),
    (
        "order_shipped.txt",
        include_str!("../templates/order_shipped.txt"),
    ),
    (
        "order_delivered.html",
        include_str!("../templates/order_delivered.html"),
    ),
    (
        "order_delivered.txt",
        include_str!("../templates/order_delivered.txt"),
    ),
    (
        "order_cancelled.html",
        include_str!("../templates/order_cancelled.html"),
    ),
    (
        "order_cancelled.txt",
        include_str!("../templates/order_cancelled.txt"),
    ),
    (
        "payment_refunded.html",
        include_str!("../templates/payment_refunded.html"),
    ),
    (
        "payment_refunded.txt",
        include_str!("../templates/payment_refunded.txt"),
    ),
];

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// What a kind of notification is about (merged into the template context
/// beside `kind`, `shop_name`, `recipient` and `subject`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Details<'a> {
    Welcome {
        name: &'a str,
    },
    Order {
        order: &'a OrderUpdate,
    },
    Cancelled {
        order: &'a OrderCancelled,
    },
    Refund {
        refund: &'a PaymentRefunded,
        order_number: Option<&'a str>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render the {kind} notification: {source:#}")]
pub struct RenderError {
    kind: &'static str,
    #[source]
    source: minijinja::Error,
}

/// The compiled templates; cheap to clone.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

fn money(value: Serde<Money>) -> String {
    value.0.to_string()
}

/// Subjects are one line: newlines and runs of spaces become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Templates {
    /// Compile every embedded template (a syntax error is a bug, reported
    /// at start-up rather than at the first email).
    pub fn load() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        // A misspelt variable fails the render instead of printing nothing.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("money", money);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env: Arc::new(env) })
    }

    pub fn render(
        &self,
        kind: Kind,
        shop_name: &str,
        recipient: &str,
        details: &Details<'_>,
    ) -> Result<Email, RenderError> {
        let fail = |source| RenderError {
            kind: kind.as_str(),
            source,
        };
        let base = context! {
            kind => kind.as_str(),
            shop_name => shop_name,
            recipient => recipient,
            ..Value::from(Serde(details))
        };
        let subject = one_line(
            &self
                .env
                .get_template("subject.txt")
                .and_then(|t| t.render(base.clone()))
                .map_err(fail)?,
        );
        let ctx = context! { subject => subject.clone(), ..base };
        let render = |format: &str| {
            self.env
                .get_template(&format!("{}.{format}", kind.as_str()))
                .and_then(|t| t.render(ctx.clone()))
                .map_err(fail)
        };
        Ok(Email {
            html: render("html")?,
            text: render("txt")?,
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderLine;
    use uuid::Uuid;

    fn order() -> OrderUpdate {
        OrderUpdate {
            order_id: Uuid::now_v7(),
            order_number: "EMP-1001".into(),
            customer_id: Uuid::now_v7(),
            customer_email: "ada@example.com".into(),
            lines: vec![
                OrderLine {
                    name: "Mug <b>bold</b> & \"quoted\"".into(),
                    unit_price: Money::new(999, "USD"),
                    quantity: 2,
                    line_total: Money::new(1998, "USD"),
                },
                OrderLine {
                    name: "Tea".into(),
                    unit_price: Money::new(123_456, "USD"),
                    quantity: 1,
                    line_total: Money::new(123_456, "USD"),
                },
            ],
            subtotal: Money::new(125_454, "USD"),
            shipping: Money::new(500, "USD"),
            tax: Money::new(0, "USD"),
            total: Money::new(125_954, "USD"),
        }
    }

    fn render(kind: Kind, details: &Details<'_>) -> Email {
        Templates::load()
            .unwrap()
            .render(kind, "Emporium", "ada@example.com", details)
            .unwrap()
    }

    #[test]
    fn order_confirmation_has_number_lines_and_money() {
        let o = order();
        let email = render(Kind::OrderConfirmed, &Details::Order { order: &o });
        assert_eq!(email.subject, "Your Emporium order EMP-1001 is confirmed");
        for part in [&email.html, &email.text] {
            assert!(part.contains("EMP-1001"), "{part}");
            assert!(part.contains("$9.99"), "{part}");
            assert!(part.contains("$19.98"), "{part}");
            assert!(part.contains("$1,234.56"), "{part}");
            assert!(part.contains("$1,259.54"), "{part}");
            assert!(part.contains("$5.00"), "{part}");
        }
        assert!(
            email
                .text
                .contains("2 x Mug <b>bold</b> & \"quoted\" @ $9.99 = $19.98")
        );
        assert!(!email.text.contains("{{"), "{}", email.text);
    }

    #[test]
    fn html_escapes_what_customers_typed_and_text_does_not() {
        let o = order();
        let email = render(Kind::OrderShipped, &Details::Order { order: &o });
        assert!(
            email
                .html
                .contains("Mug &lt;b&gt;bold&lt;&#x2f;b&gt; &amp; &quot;quoted&quot;"),
            "{}",
            email.html
        );
        assert!(!email.html.contains("<b>bold"));
        assert!(
            email
                .html
                .contains("<title>Your Emporium order EMP-1001 has shipped</title>")
        );
    }

    #[test]
    fn every_kind_renders() {
        let o = order();
        let cancelled = OrderCancelled {
            order_id: o.order_id,
            order_number: o.order_number.clone(),
            customer_id: o.customer_id,
            customer_email: o.customer_email.clone(),
            reason: "payment declined".into(),
            paid: true,
            lines: o.lines.clone(),
            total: Money::new(1999, "EUR"),
        };
        let refund = PaymentRefunded {
            order_id: o.order_id,
            payment_id: Uuid::now_v7(),
            amount: Money::new(1999, "EUR"),
            customer_email: o.customer_email.clone(),
            customer_id: None,
            order_number: None,
        };
        let cases = [
            (
                Kind::Welcome,
                Details::Welcome { name: "Ada" },
                "Welcome to Emporium, Ada",
            ),
            (
                Kind::OrderConfirmed,
                Details::Order { order: &o },
                "Your Emporium order EMP-1001 is confirmed",
            ),
            (
                Kind::OrderShipped,
                Details::Order { order: &o },
                "Your Emporium order EMP-1001 has shipped",
            ),
            (
                Kind::OrderDelivered,
                Details::Order { order: &o },
                "Your Emporium order EMP-1001 was delivered",
            ),
            (
                Kind::OrderCancelled,
                Details::Cancelled { order: &cancelled },
                "Your Emporium order EMP-1001 was cancelled",
            ),
            (
                Kind::PaymentRefunded,
                Details::Refund {
                    refund: &refund,
                    order_number: Some("EMP-1001"),
                },
                "Your Emporium refund of €19.99 for order EMP-1001",
            ),
            (
                Kind::PaymentRefunded,
                Details::Refund {
                    refund: &refund,
                    order_number: None,
                },
                "Your Emporium refund of €19.99",
            ),
        ];
        for (kind, details, subject) in cases {
            let email = render(kind, &details);
            assert_eq!(email.subject, subject);
            assert!(email.html.starts_with("<!DOCTYPE html>"), "{kind:?}");
            assert!(
                email.text.starts_with("Emporium\n"),
                "{kind:?}: {}",
                email.text
            );
            assert!(!email.text.contains("{%"), "{kind:?}");
        }
        let email = render(
            Kind::OrderCancelled,
            &Details::Cancelled { order: &cancelled },
        );
        assert!(email.text.contains("Reason: payment declined"));
        assert!(email.text.contains("You were charged €19.99"));
    }

    #[test]
    fn subjects_stay_on_one_line() {
        let email = render(
            Kind::Welcome,
            &Details::Welcome {
                name: "Ada\r\nBcc: victim@example.com",
            },
        );
        assert_eq!(
            email.subject,
            "Welcome to Emporium, Ada Bcc: victim@example.com"
        );
    }

    #[test]
    fn money_filter_formats_minor_units() {
        let env = Templates::load().unwrap();
        let mut e = (*env.env).clone();
        e.add_template("t.txt", "{{ m|money }}").unwrap();
        let out = e
            .get_template("t.txt")
            .unwrap()
            .render(context! { m => Value::from(Serde(Money::new(1999, "USD"))) })
            .unwrap();
        assert_eq!(out, "$19.99");
    }
}
