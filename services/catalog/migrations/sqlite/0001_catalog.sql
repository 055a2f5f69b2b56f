-- The catalogue on SQLite: the same tables as PostgreSQL, with FTS5 in
-- place of tsvector. `is_active` is an INTEGER 0/1 (SQLite has no boolean
-- type the Any driver can read).

CREATE TABLE categories (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT categories_slug_key UNIQUE (slug),
    CONSTRAINT categories_parent_fkey FOREIGN KEY (parent_id) REFERENCES categories (id),
    CONSTRAINT categories_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);

CREATE INDEX categories_parent_idx ON categories (parent_id);

CREATE TABLE products (
    -- A stable integer rowid for the full-text index (a plain rowid may
    -- change on VACUUM); the public id is the UUID.
    doc_id INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_amount INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    stock INTEGER NOT NULL,
    category_id TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    rating_sum INTEGER NOT NULL DEFAULT 0,
    rating_count INTEGER NOT NULL DEFAULT 0,
    rating_avg_x100 INTEGER GENERATED ALWAYS AS
        (CASE WHEN rating_count = 0 THEN 0 ELSE (rating_sum * 100) / rating_count END) STORED,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT products_id_key UNIQUE (id),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_category_fkey FOREIGN KEY (category_id) REFERENCES categories (id),
    CONSTRAINT products_price_positive CHECK (price_amount > 0),
    CONSTRAINT products_stock_nonnegative CHECK (stock >= 0),
    CONSTRAINT products_active_flag CHECK (is_active IN (0, 1)),
    CONSTRAINT products_rating_consistent
        CHECK (rating_count >= 0 AND rating_sum BETWEEN rating_count AND 5 * rating_count)
);

CREATE INDEX products_category_idx ON products (category_id);
CREATE INDEX products_newest_idx ON products (is_active, created_at, id);
CREATE INDEX products_price_idx ON products (is_active, price_amount, id);
CREATE INDEX products_rating_idx ON products (is_active, rating_avg_x100, id);

-- Full-text index over name, SKU and description, kept in sync by triggers.
CREATE VIRTUAL TABLE products_fts USING fts5 (
    name,
    sku,
    description,
    content = 'products',
    content_rowid = 'doc_id',
    tokenize = 'porter unicode61'
);

CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, sku, description)
    VALUES (new.doc_id, new.name, new.sku, new.description);
END;

CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, sku, description)
    VALUES ('delete', old.doc_id, old.name, old.sku, old.description);
END;

CREATE TRIGGER products_fts_update AFTER UPDATE OF name, sku, description ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, sku, description)
    VALUES ('delete', old.doc_id, old.name, old.sku, old.description);
    INSERT INTO products_fts (rowid, name, sku, description)
    VALUES (new.doc_id, new.name, new.sku, new.description);
END;

CREATE TABLE product_images (
    product_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    url TEXT NOT NULL,
    alt TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (product_id, ordinal),
    CONSTRAINT product_images_product_fkey FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE
);

CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    rating INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    CONSTRAINT reviews_one_per_user UNIQUE (product_id, user_id),
    CONSTRAINT reviews_product_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT reviews_rating_range CHECK (rating BETWEEN 1 AND 5)
);

CREATE INDEX reviews_product_newest_idx ON reviews (product_id, created_at, id);
