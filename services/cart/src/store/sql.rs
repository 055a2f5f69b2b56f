//! Carts in the service's SQL database (SQLite embedded, PostgreSQL if
//! chosen), in portable SQL. Each change is one transaction that first
//! upserts the cart's row: that row lock (or SQLite's write lock) queues
//! concurrent writers to the same cart, so none loses another's update.

use std::time::Duration;

use kit::clock::now_millis;
use kit::db::Database;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use uuid::Uuid;

use super::{AddOutcome, Retention, SetOutcome, StoreError};
use crate::domain::{CartOwner, Line, MAX_QUANTITY, Money};

pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const LINE_COLUMNS: &str =
    "l.product_id, l.name, l.unit_amount, l.currency, l.quantity, l.added_at";

#[derive(Clone)]
pub struct SqlCarts {
    db: Database,
    retention: Retention,
}

fn line_from_row(row: &AnyRow) -> Result<Line, sqlx::Error> {
    let product_id: String = row.try_get("product_id")?;
    let currency: String = row.try_get("currency")?;
    Ok(Line {
        product_id: Uuid::parse_str(&product_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        name: row.try_get("name")?,
        unit_price: Money::new(row.try_get("unit_amount")?, &currency),
        quantity: row.try_get("quantity")?,
        added_at: row.try_get("added_at")?,
    })
}

/// The lines of a cart that is being changed (its row is locked).
async fn lines_in(conn: &mut AnyConnection, key: &str) -> Result<Vec<Line>, sqlx::Error> {
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM cart_lines l WHERE l.cart_key = $1 \
         ORDER BY l.added_at, l.product_id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_all(conn)
        .await?;
    rows.iter().map(line_from_row).collect()
}

async fn set_line_quantity(
    conn: &mut AnyConnection,
    key: &str,
    product_id: Uuid,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cart_lines SET quantity = $1 WHERE cart_key = $2 AND product_id = $3")
        .bind(quantity)
        .bind(key)
        .bind(product_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_line(conn: &mut AnyConnection, key: &str, line: &Line) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cart_lines (cart_key, product_id, name, unit_amount, currency, quantity, added_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key)
    .bind(line.product_id.to_string())
    .bind(&line.name)
    .bind(line.unit_price.amount)
    .bind(&line.unit_price.currency)
    .bind(line.quantity)
    .bind(line.added_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn delete_cart(conn: &mut AnyConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cart_lines WHERE cart_key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM carts WHERE cart_key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

impl SqlCarts {
    /// A store on `db`; apply the migrations first.
    pub async fn open(db: Database, retention: Retention) -> Result<Self, kit::db::DbError> {
        db.migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS).await?;
        kit::events::ensure_schema(&db)
            .await
            .map_err(kit::db::DbError::Connect)?;
        Ok(Self { db, retention })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Begin changing `key`'s cart: an expired cart starts afresh, a live
    /// one is kept, and either way it now expires `ttl` from now. The
    /// upsert locks the cart's row until the transaction ends.
    async fn begin_change(&self, key: &str) -> Result<Transaction<'static, Any>, sqlx::Error> {
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "DELETE FROM cart_lines WHERE cart_key IN \
             (SELECT cart_key FROM carts WHERE cart_key = $1 AND expires_at <= $2)",
        )
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM carts WHERE cart_key = $1 AND expires_at <= $2")
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO carts (cart_key, expires_at, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (cart_key) DO UPDATE SET expires_at = excluded.expires_at, \
             updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(now.saturating_add(self.retention.ttl_millis()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn lines(&self, owner: CartOwner) -> Result<Vec<Line>, StoreError> {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM cart_lines l JOIN carts c ON c.cart_key = l.cart_key \
             WHERE l.cart_key = $1 AND c.expires_at > $2 ORDER BY l.added_at, l.product_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.storage_key())
            .bind(now_millis())
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(line_from_row).collect::<Result<_, _>>()?)
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn add(
        &self,
        owner: CartOwner,
        line: Line,
        stock: i64,
    ) -> Result<AddOutcome, StoreError> {
        let key = owner.storage_key();
        let mut tx = self.begin_change(&key).await?;
        let lines = lines_in(&mut tx, &key).await?;
        let existing = lines.iter().find(|l| l.product_id == line.product_id);
        let in_cart = existing.map(|l| l.quantity).unwrap_or(0);
        let quantity = in_cart + line.quantity;
        let refused = if existing.is_none() && lines.len() >= self.retention.max_lines {
            Some(AddOutcome::CartFull)
        } else if quantity > MAX_QUANTITY {
            Some(AddOutcome::OverQuantityCap { in_cart })
        } else if quantity > stock {
            Some(AddOutcome::NotEnoughStock { in_cart })
        } else {
            None
        };
        if let Some(outcome) = refused {
            tx.rollback().await?;
            return Ok(outcome);
        }
        if existing.is_some() {
            set_line_quantity(&mut tx, &key, line.product_id, quantity).await?;
        } else {
            insert_line(&mut tx, &key, &line).await?;
        }
        let lines = lines_in(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(AddOutcome::Added(lines))
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn set_quantity(
        &self,
        owner: CartOwner,
        product_id: Uuid,
        quantity: i64,
        allowed: i64,
    ) -> Result<SetOutcome, StoreError> {
        let key = owner.storage_key();
        let mut tx = self.begin_change(&key).await?;
        let lines = lines_in(&mut tx, &key).await?;
        let Some(current) = lines.iter().find(|l| l.product_id == product_id) else {
            tx.rollback().await?;
            return Ok(SetOutcome::NotInCart);
        };
        if quantity > current.quantity && quantity > allowed {
            let in_cart = current.quantity;
            tx.rollback().await?;
            return Ok(SetOutcome::Refused { in_cart });
        }
        set_line_quantity(&mut tx, &key, product_id, quantity).await?;
        let lines = lines_in(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(SetOutcome::Updated(lines))
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn remove(
        &self,
        owner: CartOwner,
        product_id: Uuid,
    ) -> Result<Vec<Line>, StoreError> {
        let key = owner.storage_key();
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        // Only a live cart is touched: removing from a missing cart creates nothing.
        let live = sqlx::query(
            "UPDATE carts SET expires_at = $1, updated_at = $2 WHERE cart_key = $3 AND expires_at > $2",
        )
        .bind(now.saturating_add(self.retention.ttl_millis()))
        .bind(now)
        .bind(&key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !live {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        sqlx::query("DELETE FROM cart_lines WHERE cart_key = $1 AND product_id = $2")
            .bind(&key)
            .bind(product_id.to_string())
            .execute(&mut *tx)
            .await?;
        let lines = lines_in(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(lines)
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn clear(&self, owner: CartOwner) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        delete_cart(&mut tx, &owner.storage_key()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Empty `owner`'s cart because of `event`, once (the inbox claim and
    /// the delete share one transaction). `false`: seen before.
    pub async fn clear_once(
        &self,
        owner: CartOwner,
        event: &kit::events::Envelope,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        if !kit::events::inbox::first_delivery(&mut tx, "cart", event).await? {
            tx.commit().await?;
            return Ok(false);
        }
        delete_cart(&mut tx, &owner.storage_key()).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn merge(&self, from: CartOwner, into: CartOwner) -> Result<Vec<Line>, StoreError> {
        let from_key = from.storage_key();
        let into_key = into.storage_key();
        let mut tx = self.begin_change(&into_key).await?;
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM cart_lines l JOIN carts c ON c.cart_key = l.cart_key \
             WHERE l.cart_key = $1 AND c.expires_at > $2 ORDER BY l.added_at, l.product_id"
        );
        let moving = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&from_key)
            .bind(now_millis())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(line_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        delete_cart(&mut tx, &from_key).await?;
        let mut lines = lines_in(&mut tx, &into_key).await?;
        for line in moving {
            if let Some(mine) = lines.iter_mut().find(|l| l.product_id == line.product_id) {
                mine.quantity = (mine.quantity + line.quantity).min(MAX_QUANTITY);
                set_line_quantity(&mut tx, &into_key, mine.product_id, mine.quantity).await?;
            } else if lines.len() < self.retention.max_lines {
                insert_line(&mut tx, &into_key, &line).await?;
                lines.push(line);
            }
        }
        let lines = lines_in(&mut tx, &into_key).await?;
        tx.commit().await?;
        Ok(lines)
    }

    /// Delete every expired cart; returns how many.
    #[tracing::instrument(skip_all, err)]
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "DELETE FROM cart_lines WHERE cart_key IN (SELECT cart_key FROM carts WHERE expires_at <= $1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let purged = sqlx::query("DELETE FROM carts WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.db.ping().await
    }
}

/// How often expired carts are deleted: often enough that a short TTL
/// (tests) does not leave rows about, at most every five minutes.
pub fn purge_interval(ttl: Duration) -> Duration {
    ttl.clamp(Duration::from_secs(1), Duration::from_secs(300))
}
