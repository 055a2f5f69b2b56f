CREATE TABLE stock_reservations (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lines TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
