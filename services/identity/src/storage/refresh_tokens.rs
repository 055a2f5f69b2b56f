use sqlx::{Any, Executor, Row};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: i64,
    pub spent_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn uuid(s: String) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    token_hash: &str,
    created_at: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(family_id.to_string())
    .bind(user_id.to_string())
    .bind(token_hash)
    .bind(created_at)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_hash<'e>(
    db: impl Executor<'e, Database = Any>,
    token_hash: &str,
) -> Result<Option<RefreshTokenRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, family_id, user_id, expires_at, spent_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(RefreshTokenRecord {
            id: uuid(row.try_get("id")?)?,
            family_id: uuid(row.try_get("family_id")?)?,
            user_id: uuid(row.try_get("user_id")?)?,
            expires_at: row.try_get("expires_at")?,
            spent_at: row.try_get("spent_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Spend a live token. `false` means someone spent it first: a reuse.
pub async fn spend<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET spent_at = $1 \
         WHERE id = $2 AND spent_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_family<'e>(
    db: impl Executor<'e, Database = Any>,
    family_id: Uuid,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id.to_string())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn revoke_all_for_user<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: Uuid,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id.to_string())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
