CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    currency TEXT NOT NULL,
    subtotal BIGINT NOT NULL,
    shipping BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    total BIGINT NOT NULL,
    lines TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    paid_at BIGINT,
    payment_deadline BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT orders_number_key UNIQUE (number),
    CONSTRAINT orders_idempotency_key UNIQUE (customer_id, idempotency_key),
    CONSTRAINT orders_status_check CHECK (status IN ('pending', 'awaiting_payment', 'confirmed', 'processing', 'shipped', 'delivered', 'cancelled')),
    CONSTRAINT orders_total_check CHECK (total = subtotal + shipping + tax)
);

CREATE INDEX orders_customer_idx ON orders (customer_id, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at);
-- The timeout sweep only ever looks at orders still waiting.
CREATE INDEX orders_waiting_deadline_idx ON orders (payment_deadline)
    WHERE status IN ('pending', 'awaiting_payment');

CREATE TABLE order_history (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);

CREATE INDEX order_history_order_idx ON order_history (order_id, id);
