use std::str::FromStr;

/// What a user may be. Permissions in tokens derive from roles, so other
/// services check a permission, never a role name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Role::Customer => &["orders:place", "reviews:write", "cart:use"],
            Role::Admin => &[
                "users:read",
                "users:manage",
                "catalog:manage",
                "orders:manage",
                "payments:read",
            ],
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected customer or admin)"
            )),
        }
    }
}

/// Roles as stored: a comma-separated list.
pub fn encode(roles: &[Role]) -> String {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode(stored: &str) -> Vec<Role> {
    stored.split(',').filter_map(|r| r.parse().ok()).collect()
}

pub fn permissions(roles: &[Role]) -> Vec<String> {
    let mut perms: Vec<String> = roles
        .iter()
        .flat_map(|r| r.permissions().iter().map(|p| p.to_string()))
        .collect();
    perms.sort();
    perms.dedup();
    perms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_dedups() {
        let stored = encode(&[Role::Admin, Role::Customer, Role::Admin]);
        assert_eq!(stored, "customer,admin");
        assert_eq!(decode(&stored), vec![Role::Customer, Role::Admin]);
    }

    #[test]
    fn admin_can_manage_users() {
        assert!(permissions(&[Role::Admin]).contains(&"users:manage".to_string()));
        assert!(!permissions(&[Role::Customer]).contains(&"users:manage".to_string()));
    }
}
