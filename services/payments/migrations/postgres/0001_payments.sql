-- Ids are UUID v7 text and times are epoch milliseconds so the same
-- queries serve PostgreSQL and SQLite. No card data lives here: only the
-- opaque payment-method token (pm_…) and the provider's own ids.
CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- NULL for an order cancelled before payments learnt how it was to be paid.
    payment_method TEXT,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_payment_id TEXT,
    provider_refund_id TEXT,
    failure_reason TEXT,
    -- Set when the order was cancelled while its charge was in flight: the
    -- charge is refunded as soon as it succeeds.
    cancel_requested_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- One payment per order: the last line of defence against charging twice.
    CONSTRAINT payments_order_id_key UNIQUE (order_id),
    CONSTRAINT payments_amount_not_negative CHECK (amount >= 0),
    CONSTRAINT payments_status_known CHECK (status IN
        ('pending', 'processing', 'succeeded', 'failed', 'refunding', 'refunded', 'cancelled'))
);

CREATE INDEX payments_customer_idx ON payments (customer_id, id);
CREATE INDEX payments_provider_payment_idx ON payments (provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;

-- Provider webhook events already applied: a redelivered event changes nothing.
CREATE TABLE webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    deliveries BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (provider, event_id)
);
