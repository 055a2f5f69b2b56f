CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    payment_method TEXT,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_payment_id TEXT,
    provider_refund_id TEXT,
    failure_reason TEXT,
    cancel_requested_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT payments_order_id_key UNIQUE (order_id),
    CONSTRAINT payments_amount_not_negative CHECK (amount >= 0),
    CONSTRAINT payments_status_known CHECK (status IN
        ('pending', 'processing', 'succeeded', 'failed', 'refunding', 'refunded', 'cancelled'))
);

CREATE INDEX payments_customer_idx ON payments (customer_id, id);
CREATE INDEX payments_provider_payment_idx ON payments (provider_payment_id);

CREATE TABLE webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (provider, event_id)
);
