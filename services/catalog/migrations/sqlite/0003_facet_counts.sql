-- Facet counts for listings without search text, kept by triggers: one row
-- per (category, price band, in stock, whole-star rating), so browsing
-- need not count every product. SQLite has a single writer, so the rows
-- are updated in place. The bands are PRICE_BANDS in storage/products.rs;
-- the rating floor is -1 for unrated products (no rating filter matches).

CREATE TABLE product_facet_counts (
    category_id TEXT NOT NULL,
    price_band INTEGER NOT NULL,
    in_stock INTEGER NOT NULL,
    rating_floor INTEGER NOT NULL,
    products INTEGER NOT NULL,
    PRIMARY KEY (category_id, price_band, in_stock, rating_floor)
);

INSERT INTO product_facet_counts
SELECT category_id,
       CASE WHEN price_amount < 1000 THEN 0 WHEN price_amount < 2500 THEN 1
            WHEN price_amount < 5000 THEN 2 WHEN price_amount < 10000 THEN 3
            WHEN price_amount < 25000 THEN 4 WHEN price_amount < 50000 THEN 5 ELSE 6 END,
       stock > 0,
       CASE WHEN rating_count = 0 THEN -1 ELSE rating_sum / rating_count END,
       COUNT(*)
FROM products WHERE is_active = 1
GROUP BY 1, 2, 3, 4;

-- A product's key, written out per trigger (SQLite has no stored functions).
CREATE TRIGGER products_facet_counts_insert AFTER INSERT ON products WHEN new.is_active = 1
BEGIN
    INSERT OR IGNORE INTO product_facet_counts VALUES (
        new.category_id,
        CASE WHEN new.price_amount < 1000 THEN 0 WHEN new.price_amount < 2500 THEN 1
             WHEN new.price_amount < 5000 THEN 2 WHEN new.price_amount < 10000 THEN 3
             WHEN new.price_amount < 25000 THEN 4 WHEN new.price_amount < 50000 THEN 5 ELSE 6 END,
        new.stock > 0,
        CASE WHEN new.rating_count = 0 THEN -1 ELSE new.rating_sum / new.rating_count END,
        0);
    UPDATE product_facet_counts SET products = products + 1
    WHERE category_id = new.category_id
      AND price_band = CASE WHEN new.price_amount < 1000 THEN 0 WHEN new.price_amount < 2500 THEN 1
             WHEN new.price_amount < 5000 THEN 2 WHEN new.price_amount < 10000 THEN 3
             WHEN new.price_amount < 25000 THEN 4 WHEN new.price_amount < 50000 THEN 5 ELSE 6 END
      AND in_stock = (new.stock > 0)
      AND rating_floor = CASE WHEN new.rating_count = 0 THEN -1 ELSE new.rating_sum / new.rating_count END;
END;

CREATE TRIGGER products_facet_counts_delete AFTER DELETE ON products WHEN old.is_active = 1
BEGIN
    UPDATE product_facet_counts SET products = products - 1
    WHERE category_id = old.category_id
      AND price_band = CASE WHEN old.price_amount < 1000 THEN 0 WHEN old.price_amount < 2500 THEN 1
             WHEN old.price_amount < 5000 THEN 2 WHEN old.price_amount < 10000 THEN 3
             WHEN old.price_amount < 25000 THEN 4 WHEN old.price_amount < 50000 THEN 5 ELSE 6 END
      AND in_stock = (old.stock > 0)
      AND rating_floor = CASE WHEN old.rating_count = 0 THEN -1 ELSE old.rating_sum / old.rating_count END;
END;

-- An update is the old key's removal and the new key's addition; the
-- triggers' order does not matter, as each only adds or subtracts one.
CREATE TRIGGER products_facet_counts_update_old AFTER UPDATE OF is_active, category_id, stock, price_amount, rating_sum, rating_count ON products WHEN old.is_active = 1
BEGIN
    UPDATE product_facet_counts SET products = products - 1
    WHERE category_id = old.category_id
      AND price_band = CASE WHEN old.price_amount < 1000 THEN 0 WHEN old.price_amount < 2500 THEN 1
             WHEN old.price_amount < 5000 THEN 2 WHEN old.price_amount < 10000 THEN 3
             WHEN old.price_amount < 25000 THEN 4 WHEN old.price_amount < 50000 THEN 5 ELSE 6 END
      AND in_stock = (old.stock > 0)
      AND rating_floor = CASE WHEN old.rating_count = 0 THEN -1 ELSE old.rating_sum / old.rating_count END;
END;

CREATE TRIGGER products_facet_counts_update_new AFTER UPDATE OF is_active, category_id, stock, price_amount, rating_sum, rating_count ON products WHEN new.is_active = 1
BEGIN
    INSERT OR IGNORE INTO product_facet_counts VALUES (
        new.category_id,
        CASE WHEN new.price_amount < 1000 THEN 0 WHEN new.price_amount < 2500 THEN 1
             WHEN new.price_amount < 5000 THEN 2 WHEN new.price_amount < 10000 THEN 3
             WHEN new.price_amount < 25000 THEN 4 WHEN new.price_amount < 50000 THEN 5 ELSE 6 END,
        new.stock > 0,
        CASE WHEN new.rating_count = 0 THEN -1 ELSE new.rating_sum / new.rating_count END,
        0);
    UPDATE product_facet_counts SET products = products + 1
    WHERE category_id = new.category_id
      AND price_band = CASE WHEN new.price_amount < 1000 THEN 0 WHEN new.price_amount < 2500 THEN 1
             WHEN new.price_amount < 5000 THEN 2 WHEN new.price_amount < 10000 THEN 3
             WHEN new.price_amount < 25000 THEN 4 WHEN new.price_amount < 50000 THEN 5 ELSE 6 END
      AND in_stock = (new.stock > 0)
      AND rating_floor = CASE WHEN new.rating_count = 0 THEN -1 ELSE new.rating_sum / new.rating_count END;
END;
