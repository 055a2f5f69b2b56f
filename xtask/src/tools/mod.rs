//! Real peers the tests talk to, built from their Go modules and cached
//! outside the repository: an SMTP server (mailpit) and Stripe's API
//! emulator (stripe-mock).

pub mod smtp_server;
pub mod stripe_mock;

use anyhow::Result;

use crate::cmd::step;

/// Build (once) every tool and return the variables the tests find them by.
pub fn test_env() -> Result<Vec<(&'static str, String)>> {
    step(
        "tools",
        "mailpit (SMTP server) and stripe-mock (Stripe API emulator)",
    );
    let mailpit = smtp_server::ensure_mailpit()?;
    let stripe_mock = stripe_mock::ensure_stripe_mock()?;
    Ok(vec![
        ("EMPORIUM_TEST_MAILPIT", mailpit.display().to_string()),
        (
            "EMPORIUM_TEST_STRIPE_MOCK",
            stripe_mock.display().to_string(),
        ),
    ])
}
