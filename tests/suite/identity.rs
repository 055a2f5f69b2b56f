use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use emporium_tests::Backends;
use emporium_tests::shop::{Shop, ShopOptions};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

async fn problem(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(
        ct, "application/problem+json",
        "status {status} is a problem document"
    );
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn register_validates_and_rejects_duplicates() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;

    let user = shop.register("  Ada@Example.COM ", PASSWORD).await;
    assert_eq!(user["email"], "ada@example.com", "email is normalised");
    assert_eq!(user["roles"], json!(["customer"]));
    assert!(user.get("password_hash").is_none());

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "not-an-email", "password": PASSWORD, "name": "A"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "email");

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "bob@example.com", "password": "short", "name": "Bob"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "password");

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "bob@example.com", "password": "bob@example.com", "name": "Bob"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "password equal to the email is refused");
    assert_eq!(body["errors"][0]["field"], "password");

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "nope", "password": "short", "name": ""}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["email", "name", "password"],
        "every bad field is named at once"
    );

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "ADA@example.com", "password": PASSWORD, "name": "Ada 2"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["type"], "https://emporium.dev/problems/email-taken");
}

#[tokio::test]
async fn malformed_and_unknown_fields_are_client_errors() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    let res = shop
        .http
        .post(shop.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    let (status, _) = problem(res).await;
    assert_eq!(status, 400);

    let (status, body) = problem(
        shop.post(
            "/api/v1/auth/register",
            json!({"email": "eve@example.com", "password": PASSWORD, "name": "Eve", "roles": ["admin"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("roles")
    );

    let res = shop
        .http
        .post(shop.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, _) = problem(res).await;
    assert_eq!(status, 415);

    // Nothing was created by the refused requests.
    let res = shop
        .post(
            "/api/v1/auth/login",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn login_failure_does_not_reveal_which_part_was_wrong() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    shop.register("ada@example.com", PASSWORD).await;
    let (s1, wrong_password) = problem(
        shop.post(
            "/api/v1/auth/login",
            json!({"email": "ada@example.com", "password": "not the password"}),
        )
        .await,
    )
    .await;
    let (s2, unknown_email) = problem(
        shop.post(
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_password, unknown_email);

    let (access, refresh) = shop.login("ADA@example.com", PASSWORD).await;
    assert!(!access.is_empty() && !refresh.is_empty());
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let b = Backends::new();
    let shop = Shop::start(
        &b,
        ShopOptions {
            identity: identity::Settings {
                max_failures_per_account: 3,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    shop.register("ada@example.com", PASSWORD).await;
    for _ in 0..3 {
        let res = shop
            .post(
                "/api/v1/auth/login",
                json!({"email": "ada@example.com", "password": "guess guess guess"}),
            )
            .await;
        assert_eq!(res.status(), 401);
    }
    let res = shop
        .post(
            "/api/v1/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        res.status(),
        429,
        "even the right password waits out the lockout"
    );
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let (_, body) = problem(res).await;
    assert_eq!(
        body["type"],
        "https://emporium.dev/problems/login-throttled"
    );

    // Another account from the same client is not locked out by these.
    shop.register("bob@example.com", PASSWORD).await;
    shop.login("bob@example.com", PASSWORD).await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    shop.register("ada@example.com", PASSWORD).await;
    let (_, first) = shop.login("ada@example.com", PASSWORD).await;

    let res = shop
        .post("/api/v1/auth/refresh", json!({"refresh_token": first}))
        .await;
    assert_eq!(res.status(), 200);
    let pair: Value = res.json().await.unwrap();
    let second = pair["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let me = shop
        .get_with_token("/api/v1/users/me", pair["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), 200);

    // Replaying the spent token is refused and kills the newest one too.
    let (status, _) = problem(
        shop.post("/api/v1/auth/refresh", json!({"refresh_token": first}))
            .await,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = problem(
        shop.post("/api/v1/auth/refresh", json!({"refresh_token": second}))
            .await,
    )
    .await;
    assert_eq!(status, 401, "the family is revoked");

    // A separate sign-in is a separate family and still works.
    let (_, other) = shop.login("ada@example.com", PASSWORD).await;
    assert_eq!(
        shop.post("/api/v1/auth/refresh", json!({"refresh_token": other}))
            .await
            .status(),
        200
    );
    let (status, _) = problem(
        shop.post("/api/v1/auth/refresh", json!({"refresh_token": "made-up"}))
            .await,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    shop.register("ada@example.com", PASSWORD).await;
    let (_, refresh) = shop.login("ada@example.com", PASSWORD).await;
    let res = shop
        .post("/api/v1/auth/logout", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status(), 204);
    let (status, _) = problem(
        shop.post("/api/v1/auth/refresh", json!({"refresh_token": refresh}))
            .await,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn password_change_revokes_every_refresh_token() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    shop.register("ada@example.com", PASSWORD).await;
    let (access, refresh_a) = shop.login("ada@example.com", PASSWORD).await;
    let (_, refresh_b) = shop.login("ada@example.com", PASSWORD).await;

    let wrong = shop
        .http
        .post(shop.url("/api/v1/users/me/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": "not it at all", "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);

    let res = shop
        .http
        .post(shop.url("/api/v1/users/me/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for r in [refresh_a, refresh_b] {
        assert_eq!(
            shop.post("/api/v1/auth/refresh", json!({"refresh_token": r}))
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        shop.post(
            "/api/v1/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD})
        )
        .await
        .status(),
        401
    );
    shop.login("ada@example.com", "a brand new secret").await;
}

fn forge(header: Value, claims: Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn bad_tokens_are_rejected_with_401() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    let user = shop.register("ada@example.com", PASSWORD).await;
    let (access, _) = shop.login("ada@example.com", PASSWORD).await;
    let ring = identity::keys::KeyRing::load_or_generate(&shop.keys_dir).unwrap();
    let kid = ring.current_kid().to_string();
    let claims = json!({
        "sub": user["id"], "email": "ada@example.com", "roles": ["customer", "admin"],
        "perms": ["users:read", "users:manage"], "iss": "emporium-identity", "aud": "emporium",
        "exp": now() + 600, "iat": now(),
    });

    // Expired, but genuinely signed.
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(now() - 120);
    expired_claims["iat"] = json!(now() - 1000);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let expired = jsonwebtoken::encode(&header, &expired_claims, ring.encoding_key()).unwrap();

    // Wrong audience, genuinely signed.
    let mut foreign = claims.clone();
    foreign["aud"] = json!("someone-else");
    let wrong_audience = jsonwebtoken::encode(&header, &foreign, ring.encoding_key()).unwrap();

    // Tampered: a real token with its payload swapped for an admin one.
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );

    // alg none.
    let none = forge(
        json!({"alg": "none", "typ": "JWT", "kid": kid}),
        claims.clone(),
        b"",
    );

    // HS256 "signed" with the public key as the HMAC secret.
    let jwks: Value = shop
        .http
        .get(shop.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()).unwrap(),
    )
    .unwrap();

    for (name, token) in [
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("tampered", tampered),
        ("alg none", none),
        ("hs256 with public key", hs256),
        ("garbage", "not.a.token".to_string()),
    ] {
        // At the gateway's edge…
        let res = shop.get_with_token("/api/v1/users/me", &token).await;
        assert_eq!(res.status(), 401, "{name} at the gateway");
        // …and at the service itself.
        let res = shop
            .http
            .get(shop.identity().url.join("/api/v1/users").unwrap())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{name} at identity");
    }
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let b = Backends::new();
    let shop = Shop::start(
        &b,
        ShopOptions {
            identity: identity::Settings {
                admin: Some(("root@example.com".into(), "root password 123".into())),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let customer = shop.register("ada@example.com", PASSWORD).await;
    let (customer_token, _) = shop.login("ada@example.com", PASSWORD).await;
    let res = shop.get_with_token("/api/v1/users", &customer_token).await;
    assert_eq!(res.status(), 403);
    let res = shop
        .http
        .put(shop.url(&format!(
            "/api/v1/users/{}/roles",
            customer["id"].as_str().unwrap()
        )))
        .bearer_auth(&customer_token)
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let (admin_token, _) = shop.login("root@example.com", "root password 123").await;
    for i in 0..4 {
        shop.register(&format!("user{i}@example.com"), PASSWORD)
            .await;
    }
    // Page through all six users two at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=2&cursor={c}"),
            None => "/api/v1/users?limit=2".to_string(),
        };
        let page: Value = shop
            .get_with_token(&path, &admin_token)
            .await
            .json()
            .await
            .unwrap();
        for u in page["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        shop.get_with_token("/api/v1/users?limit=1000", &admin_token)
            .await
            .status(),
        422
    );

    let res = shop
        .http
        .put(shop.url(&format!(
            "/api/v1/users/{}/roles",
            customer["id"].as_str().unwrap()
        )))
        .bearer_auth(&admin_token)
        .json(&json!({"roles": ["customer", "superuser"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = shop
        .http
        .put(shop.url(&format!(
            "/api/v1/users/{}/roles",
            customer["id"].as_str().unwrap()
        )))
        .bearer_auth(&admin_token)
        .json(&json!({"roles": ["customer", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (promoted, _) = shop.login("ada@example.com", PASSWORD).await;
    assert_eq!(
        shop.get_with_token("/api/v1/users", &promoted)
            .await
            .status(),
        200
    );
    let res = shop
        .http
        .put(shop.url(&format!("/api/v1/users/{}/roles", uuid::Uuid::now_v7())))
        .bearer_auth(&admin_token)
        .json(&json!({"roles": ["customer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn jwks_rotation_keeps_old_tokens_valid() {
    let b = Backends::new();
    let mut shop = Shop::start(&b, ShopOptions::default()).await;
    shop.register("ada@example.com", PASSWORD).await;
    let (old_token, _) = shop.login("ada@example.com", PASSWORD).await;
    assert_eq!(
        shop.get_with_token("/api/v1/users/me", &old_token)
            .await
            .status(),
        200
    );
    let old_kid = identity::keys::KeyRing::load_or_generate(&shop.keys_dir)
        .unwrap()
        .current_kid()
        .to_string();

    // Rotate and restart identity on the same port and database, as an
    // operator would after replacing the signing-key Secret.
    let rotated = identity::keys::KeyRing::rotate(&shop.keys_dir).unwrap();
    assert_ne!(rotated.current_kid(), old_kid);
    shop.restart_identity(&b, identity::Settings::default())
        .await;
    let jwks: Value = shop
        .http
        .get(shop.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&rotated.current_kid()));

    // The old token still passes the gateway (which knows the old key)…
    assert_eq!(
        shop.get_with_token("/api/v1/users/me", &old_token)
            .await
            .status(),
        200
    );
    // …and a token from the new key makes the gateway refetch the JWKS.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (new_token, _) = shop.login("ada@example.com", PASSWORD).await;
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(rotated.current_kid()));
    assert_eq!(
        shop.get_with_token("/api/v1/users/me", &new_token)
            .await
            .status(),
        200
    );
    assert_eq!(
        shop.get_with_token("/api/v1/users/me", &old_token)
            .await
            .status(),
        200
    );
}
