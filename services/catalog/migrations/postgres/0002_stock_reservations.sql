-- One row per order the checkout saga asked stock for: what was taken, so a
-- cancellation gives back exactly that, once.
CREATE TABLE stock_reservations (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lines TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT stock_reservations_status_check CHECK (status IN ('reserved', 'rejected', 'released'))
);
