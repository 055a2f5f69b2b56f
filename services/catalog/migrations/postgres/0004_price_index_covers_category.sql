-- Listings filtered by a price range that cuts a band count their facets
-- live; carrying the category in the price index lets that count read the
-- index alone (15 -> 2 ms over 10,000 matches). The category rarely
-- changes, so stock and rating updates stay heap-only (HOT).
DROP INDEX products_active_price_idx;
CREATE INDEX products_active_price_idx ON products (price_amount, id) INCLUDE (category_id) WHERE is_active;
