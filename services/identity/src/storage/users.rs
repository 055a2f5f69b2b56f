use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use uuid::Uuid;

use crate::domain::role::{self, Role};

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, email, name, password_hash, roles, created_at";

fn from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(UserRecord {
        id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        roles: role::decode(&row.try_get::<String, _>("roles")?),
        created_at: row.try_get("created_at")?,
    })
}

pub enum InsertOutcome {
    Inserted,
    EmailTaken,
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    user: &UserRecord,
) -> Result<InsertOutcome, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, roles, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(user.id.to_string())
    .bind(&user.email)
    .bind(&user.name)
    .bind(&user.password_hash)
    .bind(role::encode(&user.roles))
    .bind(user.created_at)
    .execute(db)
    .await;
    match result {
        Ok(_) => Ok(InsertOutcome::Inserted),
        Err(e) if kit::db::is_unique_violation(&e) => Ok(InsertOutcome::EmailTaken),
        Err(e) => Err(e),
    }
}

pub async fn by_email<'e>(
    db: impl Executor<'e, Database = Any>,
    email: &str,
) -> Result<Option<UserRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(email)
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn by_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<UserRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A page of users in id (creation) order, after `cursor`.
pub async fn page<'e>(
    db: impl Executor<'e, Database = Any>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after.map(|u| u.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_roles<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    roles: &[Role],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE id = $3")
        .bind(role::encode(roles))
        .bind(now)
        .bind(id.to_string())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_password_hash<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now)
        .bind(id.to_string())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
