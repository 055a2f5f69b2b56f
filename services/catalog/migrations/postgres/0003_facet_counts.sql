-- Facet counts for listings without search text. Browsing counts every
-- listed product per category and price band, which on a large catalogue
-- is a scan of the whole table; these counts are kept by triggers instead,
-- one row per (category, price band, in stock, whole-star rating).
--
-- Writers only ever append a +n/-n row, never update one, so stock
-- reservations and admin edits never wait on each other here; the catalog
-- folds the rows together now and then (storage::products::
-- compact_facet_counts). The bands are PRICE_BANDS in storage/products.rs.

CREATE FUNCTION catalog_price_band(amount BIGINT) RETURNS INTEGER
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN amount < 1000 THEN 0
        WHEN amount < 2500 THEN 1
        WHEN amount < 5000 THEN 2
        WHEN amount < 10000 THEN 3
        WHEN amount < 25000 THEN 4
        WHEN amount < 50000 THEN 5
        ELSE 6
    END
$$;

-- The whole stars of the average rating (a product with an average of 4.5
-- matches min_rating=4); -1 when unrated, which no rating filter matches.
CREATE FUNCTION catalog_rating_floor(rating_sum BIGINT, rating_count BIGINT) RETURNS INTEGER
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN rating_count = 0 THEN -1 ELSE (rating_sum / rating_count)::INTEGER END
$$;

CREATE TABLE product_facet_counts (
    category_id TEXT NOT NULL,
    price_band INTEGER NOT NULL,
    in_stock BOOLEAN NOT NULL,
    rating_floor INTEGER NOT NULL,
    products BIGINT NOT NULL
);

INSERT INTO product_facet_counts
SELECT category_id, catalog_price_band(price_amount), stock > 0,
       catalog_rating_floor(rating_sum, rating_count), COUNT(*)
FROM products WHERE is_active
GROUP BY 1, 2, 3, 4;

-- Bulk inserts (seeding, imports) add one row per key, not one per product.
CREATE FUNCTION product_facet_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_facet_counts
    SELECT category_id, catalog_price_band(price_amount), stock > 0,
           catalog_rating_floor(rating_sum, rating_count), COUNT(*)
    FROM added WHERE is_active
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;

CREATE FUNCTION product_facet_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_active THEN
        INSERT INTO product_facet_counts VALUES (
            OLD.category_id, catalog_price_band(OLD.price_amount), OLD.stock > 0,
            catalog_rating_floor(OLD.rating_sum, OLD.rating_count), -1);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.is_active THEN
        INSERT INTO product_facet_counts VALUES (
            NEW.category_id, catalog_price_band(NEW.price_amount), NEW.stock > 0,
            catalog_rating_floor(NEW.rating_sum, NEW.rating_count), 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION product_facet_counts_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM product_facet_counts;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_facet_counts_insert AFTER INSERT ON products
REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION product_facet_counts_added();

-- Most updates (a stock reservation that leaves stock on hand, a new
-- description) move no product between keys and never call the function.
CREATE TRIGGER products_facet_counts_update AFTER UPDATE ON products
FOR EACH ROW WHEN (
    OLD.is_active IS DISTINCT FROM NEW.is_active
    OR OLD.category_id IS DISTINCT FROM NEW.category_id
    OR (OLD.stock > 0) IS DISTINCT FROM (NEW.stock > 0)
    OR catalog_price_band(OLD.price_amount) IS DISTINCT FROM catalog_price_band(NEW.price_amount)
    OR catalog_rating_floor(OLD.rating_sum, OLD.rating_count)
        IS DISTINCT FROM catalog_rating_floor(NEW.rating_sum, NEW.rating_count)
) EXECUTE FUNCTION product_facet_counts_moved();

CREATE TRIGGER products_facet_counts_delete AFTER DELETE ON products
FOR EACH ROW EXECUTE FUNCTION product_facet_counts_moved();

CREATE TRIGGER products_facet_counts_truncate AFTER TRUNCATE ON products
FOR EACH STATEMENT EXECUTE FUNCTION product_facet_counts_cleared();
