//! Identity's use cases: register, sign in, rotate and revoke refresh
//! tokens, change passwords and roles.

use kit::clock::now_millis;
use kit::events::Envelope;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Email, NewPassword, Role};
use crate::error::{IdentityError, Result};
use crate::storage::users::{InsertOutcome, UserRecord};
use crate::storage::{refresh_tokens, users};
use crate::tokens;

pub const SERVICE: &str = "identity";

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

/// Payload of `user.registered`.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

pub async fn register(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
    roles: Vec<Role>,
) -> Result<UserRecord> {
    let mut errors = Vec::new();
    let email = Email::parse(email).map_err(|m| errors.push(kit::FieldError::new("email", m)));
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(kit::FieldError::new("name", "must be 1 to 100 characters"));
    }
    let password = match &email {
        Ok(e) => NewPassword::parse(password, e)
            .map_err(|m| errors.push(kit::FieldError::new("password", m)))
            .ok(),
        Err(_) => {
            if let Err(m) = NewPassword::check_length(password) {
                errors.push(kit::FieldError::new("password", m));
            }
            None
        }
    };
    let (Ok(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(IdentityError::Validation(errors));
    };

    let hash = state.hasher.hash(password.expose()).await?;
    let now = now_millis();
    let user = UserRecord {
        id: Uuid::now_v7(),
        email: email.as_str().to_string(),
        name: name.to_string(),
        password_hash: hash,
        roles,
        created_at: now,
    };
    let event = Envelope::new(
        SERVICE,
        "user.registered",
        UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
        },
    )?;
    let mut tx = state.db.begin().await?;
    match users::insert(&mut *tx, &user).await? {
        InsertOutcome::EmailTaken => return Err(IdentityError::EmailTaken),
        InsertOutcome::Inserted => {}
    }
    let recorded = state.outbox.record(&mut tx, &event).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    tracing::info!(user_id = %user.id, "user registered");
    Ok(user)
}

async fn issue_pair(
    state: &AppState,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &UserRecord,
    family_id: Uuid,
) -> Result<TokenPair> {
    let now = now_millis();
    let s = &state.settings;
    let access = tokens::access_token(
        &state.keys,
        user,
        &s.issuer,
        &s.audience,
        now / 1000,
        s.access_ttl.as_secs() as i64,
    )?;
    let refresh = tokens::new_refresh_token();
    refresh_tokens::insert(
        &mut **tx,
        Uuid::now_v7(),
        family_id,
        user.id,
        &tokens::hash_refresh_token(&refresh),
        now,
        now + s.refresh_ttl.as_millis() as i64,
    )
    .await?;
    Ok(TokenPair {
        access_token: access,
        refresh_token: refresh,
        expires_in: s.access_ttl.as_secs() as i64,
    })
}

pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    client: &str,
) -> Result<TokenPair> {
    let normalised = email.trim().to_lowercase();
    if let Some(wait) = state.throttle.blocked_for(&normalised, client).await {
        return Err(IdentityError::Throttled {
            retry_after_secs: wait,
        });
    }
    let user = users::by_email(state.db.pool(), &normalised).await?;
    let ok = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.record_failure(&normalised, client).await;
        return Err(IdentityError::InvalidCredentials);
    };
    state.throttle.record_success(&normalised).await;
    let mut tx = state.db.begin().await?;
    let pair = issue_pair(state, &mut tx, &user, Uuid::now_v7()).await?;
    tx.commit().await?;
    Ok(pair)
}

/// Rotate a refresh token. Presenting one already spent means it leaked:
/// the whole family is revoked, including the newest token.
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenPair> {
    let now = now_millis();
    let hash = tokens::hash_refresh_token(presented);
    let mut tx = state.db.begin().await?;
    let Some(token) = refresh_tokens::by_hash(&mut *tx, &hash).await? else {
        return Err(IdentityError::InvalidRefreshToken);
    };
    if token.revoked_at.is_some() || token.expires_at <= now {
        return Err(IdentityError::InvalidRefreshToken);
    }
    if token.spent_at.is_some() || !refresh_tokens::spend(&mut *tx, token.id, now).await? {
        let revoked = refresh_tokens::revoke_family(&mut *tx, token.family_id, now).await?;
        tx.commit().await?;
        tracing::warn!(user_id = %token.user_id, family = %token.family_id, revoked, "refresh token reused; family revoked");
        return Err(IdentityError::InvalidRefreshToken);
    }
    let Some(user) = users::by_id(&mut *tx, token.user_id).await? else {
        return Err(IdentityError::InvalidRefreshToken);
    };
    let pair = issue_pair(state, &mut tx, &user, token.family_id).await?;
    tx.commit().await?;
    Ok(pair)
}

pub async fn logout(state: &AppState, presented: &str) -> Result<()> {
    let hash = tokens::hash_refresh_token(presented);
    let mut tx = state.db.begin().await?;
    let Some(token) = refresh_tokens::by_hash(&mut *tx, &hash).await? else {
        return Err(IdentityError::InvalidRefreshToken);
    };
    refresh_tokens::revoke_family(&mut *tx, token.family_id, now_millis()).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn change_password(
    state: &AppState,
    user_id: Uuid,
    current: &str,
    new: &str,
) -> Result<()> {
    let Some(user) = users::by_id(state.db.pool(), user_id).await? else {
        return Err(IdentityError::UserNotFound);
    };
    if !state
        .hasher
        .verify(current, Some(&user.password_hash))
        .await?
    {
        return Err(IdentityError::field("current_password", "is incorrect"));
    }
    let email = Email::parse(&user.email).map_err(|m| IdentityError::field("email", m))?;
    let new =
        NewPassword::parse(new, &email).map_err(|m| IdentityError::field("new_password", m))?;
    let hash = state.hasher.hash(new.expose()).await?;
    let now = now_millis();
    let mut tx = state.db.begin().await?;
    users::set_password_hash(&mut *tx, user_id, &hash, now).await?;
    refresh_tokens::revoke_all_for_user(&mut *tx, user_id, now).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_roles(state: &AppState, user_id: Uuid, roles: &[String]) -> Result<UserRecord> {
    if roles.is_empty() {
        return Err(IdentityError::field("roles", "must name at least one role"));
    }
    let parsed: Vec<Role> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.parse::<Role>()
                .map_err(|m| IdentityError::field(&format!("roles[{i}]"), &m))
        })
        .collect::<Result<_>>()?;
    if !users::set_roles(state.db.pool(), user_id, &parsed, now_millis()).await? {
        return Err(IdentityError::UserNotFound);
    }
    users::by_id(state.db.pool(), user_id)
        .await?
        .ok_or(IdentityError::UserNotFound)
}

/// Make sure the configured first admin exists and holds the admin role.
/// An existing account keeps its password.
pub async fn ensure_admin(state: &AppState, email: &str, password: &str) -> Result<()> {
    let normalised =
        Email::parse(email).map_err(|m| IdentityError::field("EMPORIUM_ADMIN_EMAIL", m))?;
    match users::by_email(state.db.pool(), normalised.as_str()).await? {
        Some(user) if user.roles.contains(&Role::Admin) => Ok(()),
        Some(user) => {
            let mut roles = user.roles.clone();
            roles.push(Role::Admin);
            users::set_roles(state.db.pool(), user.id, &roles, now_millis()).await?;
            Ok(())
        }
        None => match register(
            state,
            email,
            password,
            "Administrator",
            vec![Role::Customer, Role::Admin],
        )
        .await
        {
            Ok(_) | Err(IdentityError::EmailTaken) => Ok(()),
            Err(IdentityError::Validation(errors)) => Err(IdentityError::Validation(
                errors
                    .into_iter()
                    .map(|e| {
                        kit::FieldError::new(
                            format!("EMPORIUM_ADMIN_{}", e.field.to_uppercase()),
                            e.message,
                        )
                    })
                    .collect(),
            )),
            Err(e) => Err(e),
        },
    }
}
