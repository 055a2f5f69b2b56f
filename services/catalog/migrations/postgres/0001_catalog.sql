-- The catalogue. Ids are UUID v7 text and times epoch milliseconds, so the
-- same portable queries serve PostgreSQL and SQLite; what only PostgreSQL
-- can do (full-text search, partial indexes) lives here.

CREATE TABLE categories (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT categories_slug_key UNIQUE (slug),
    CONSTRAINT categories_parent_fkey FOREIGN KEY (parent_id) REFERENCES categories (id),
    CONSTRAINT categories_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);

CREATE INDEX categories_parent_idx ON categories (parent_id);

CREATE TABLE products (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price_amount BIGINT NOT NULL,
    price_currency TEXT NOT NULL,
    -- Reserved atomically by the checkout saga (UPDATE ... SET stock =
    -- stock - n WHERE stock >= n); the check is the last line of defence.
    stock BIGINT NOT NULL,
    category_id TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    rating_sum BIGINT NOT NULL DEFAULT 0,
    rating_count BIGINT NOT NULL DEFAULT 0,
    -- The average rating times 100, truncated: an integer to sort and page on.
    rating_avg_x100 BIGINT GENERATED ALWAYS AS
        (CASE WHEN rating_count = 0 THEN 0 ELSE (rating_sum * 100) / rating_count END) STORED,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Name weighs most, then the SKU, then the description.
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, name), 'A')
        || setweight(to_tsvector('simple'::regconfig, sku), 'B')
        || setweight(to_tsvector('english'::regconfig, description), 'C')
    ) STORED,
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_category_fkey FOREIGN KEY (category_id) REFERENCES categories (id),
    CONSTRAINT products_price_positive CHECK (price_amount > 0),
    CONSTRAINT products_stock_nonnegative CHECK (stock >= 0),
    CONSTRAINT products_rating_consistent
        CHECK (rating_count >= 0 AND rating_sum BETWEEN rating_count AND 5 * rating_count)
);

-- Deleting a category checks for its products.
CREATE INDEX products_category_idx ON products (category_id);
-- Public listings only ever show active products: one partial index per
-- keyset sort (scanned backwards for the descending ones).
CREATE INDEX products_active_newest_idx ON products (created_at, id) WHERE is_active;
CREATE INDEX products_active_price_idx ON products (price_amount, id) WHERE is_active;
CREATE INDEX products_active_rating_idx ON products (rating_avg_x100, id) WHERE is_active;
CREATE INDEX products_active_category_price_idx ON products (category_id, price_amount, id) WHERE is_active;
CREATE INDEX products_search_idx ON products USING GIN (search);

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
    created_at BIGINT NOT NULL,
    CONSTRAINT reviews_one_per_user UNIQUE (product_id, user_id),
    CONSTRAINT reviews_product_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT reviews_rating_range CHECK (rating BETWEEN 1 AND 5)
);

CREATE INDEX reviews_product_newest_idx ON reviews (product_id, created_at, id);
