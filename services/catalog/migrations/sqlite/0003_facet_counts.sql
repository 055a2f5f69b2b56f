-- Facet counts for listings without search text, kept by triggers: one row
-- per (category, price band, in stock, whole-star rating), so browsing
-- need not count every product. SQLite has a single writer, so the rows
-- are updated in place. The bands are PRICE_BANDS in storage/products.rs;
-- the rating floor is -1 for unrated products (no rating filter matches).

-- A product's key, computed on read (virtual), for the triggers.
ALTER TABLE products ADD COLUMN price_band INTEGER GENERATED ALWAYS AS (
    CASE WHEN price_amount < 1000 THEN 0 WHEN price_amount < 2500 THEN 1
         WHEN price_amount < 5000 THEN 2 WHEN price_amount < 10000 THEN 3
         WHEN price_amount < 25000 THEN 4 WHEN price_amount < 50000 THEN 5 ELSE 6 END
) VIRTUAL;
ALTER TABLE products ADD COLUMN rating_floor INTEGER GENERATED ALWAYS AS (
    CASE WHEN rating_count = 0 THEN -1 ELSE rating_sum / rating_count END
) VIRTUAL;

CREATE TABLE product_facet_counts (
    category_id TEXT NOT NULL,
    price_band INTEGER NOT NULL,
    in_stock INTEGER NOT NULL,
    rating_floor INTEGER NOT NULL,
    products INTEGER NOT NULL,
    PRIMARY KEY (category_id, price_band, in_stock, rating_floor)
);

INSERT INTO product_facet_counts
SELECT category_id, price_band, stock > 0, rating_floor, COUNT(*)
FROM products WHERE is_active = 1
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER products_facet_counts_insert AFTER INSERT ON products WHEN new.is_active = 1
BEGIN
    INSERT INTO product_facet_counts
    VALUES (new.category_id, new.price_band, new.stock > 0, new.rating_floor, 1)
    ON CONFLICT DO UPDATE SET products = products + 1;
END;

CREATE TRIGGER products_facet_counts_delete AFTER DELETE ON products WHEN old.is_active = 1
BEGIN
    UPDATE product_facet_counts SET products = products - 1
    WHERE (category_id, price_band, in_stock, rating_floor)
        = (old.category_id, old.price_band, old.stock > 0, old.rating_floor);
END;

-- The old key gives one up, the new key takes one.
CREATE TRIGGER products_facet_counts_update
AFTER UPDATE OF is_active, category_id, stock, price_amount, rating_sum, rating_count ON products
BEGIN
    UPDATE product_facet_counts SET products = products - 1
    WHERE old.is_active = 1
      AND (category_id, price_band, in_stock, rating_floor)
        = (old.category_id, old.price_band, old.stock > 0, old.rating_floor);
    INSERT INTO product_facet_counts
    SELECT new.category_id, new.price_band, new.stock > 0, new.rating_floor, 1
    WHERE new.is_active = 1
    ON CONFLICT DO UPDATE SET products = products + 1;
END;
