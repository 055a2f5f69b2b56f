-- Carts kept in SQL (embedded mode, or by choice). A cart lives until
-- expires_at (ms since the epoch); reads skip expired carts and a
-- background task deletes them.
CREATE TABLE carts (
    cart_key   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX carts_expires_at ON carts (expires_at);

CREATE TABLE cart_lines (
    cart_key    TEXT NOT NULL REFERENCES carts (cart_key) ON DELETE CASCADE,
    product_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    unit_amount BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    quantity    BIGINT NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (cart_key, product_id),
    CONSTRAINT cart_lines_quantity CHECK (quantity BETWEEN 1 AND 99)
);
