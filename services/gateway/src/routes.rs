//! The route table: which path prefix goes to which upstream service, and
//! what a caller must show at the edge to pass.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone may read (GET, HEAD, OPTIONS); writes need a valid token.
    PublicRead,
    /// A token is optional, but one that is sent must be valid (guest carts).
    Optional,
    /// A valid token is required.
    Protected,
}

impl FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Access::Public),
            "public-read" => Ok(Access::PublicRead),
            "optional" => Ok(Access::Optional),
            "protected" => Ok(Access::Protected),
            other => Err(format!(
                "unknown access `{other}` (expected public, public-read, optional or protected)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub service: String,
    pub access: Access,
}

/// The shop's API surface. Override with `EMPORIUM_GATEWAY_ROUTES`.
pub const DEFAULT_ROUTES: &str = "\
/api/v1/auth=identity:public,\
/.well-known/jwks.json=identity:public,\
/api/v1/users=identity:protected,\
/api/v1/categories=catalog:public-read,\
/api/v1/products=catalog:public-read,\
/api/v1/cart=cart:optional,\
/api/v1/orders=orders:protected,\
/api/v1/payments/webhooks=payments:public,\
/api/v1/payments=payments:protected,\
/api/v1/notifications=notifications:protected";

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Parse `prefix=service[:access],…`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut routes = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (prefix, target) = entry
                .split_once('=')
                .ok_or_else(|| format!("route `{entry}`: expected prefix=service[:access]"))?;
            if !prefix.starts_with('/') {
                return Err(format!("route `{entry}`: the prefix must start with /"));
            }
            let (service, access) = match target.split_once(':') {
                Some((s, a)) => (s, a.parse()?),
                None => (target, Access::Protected),
            };
            if service.is_empty() {
                return Err(format!("route `{entry}`: missing service name"));
            }
            routes.push(Route {
                prefix: prefix.trim_end_matches('/').to_string(),
                service: service.to_string(),
                access,
            });
        }
        // Longest prefix first, so `/api/v1/payments/webhooks` wins over
        // `/api/v1/payments`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes })
    }

    pub fn services(&self) -> Vec<String> {
        let mut s: Vec<String> = self.routes.iter().map(|r| r.service.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    /// The route serving `path`, matching whole segments only.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            path == r.prefix
                || (path.starts_with(&r.prefix)
                    && path.as_bytes().get(r.prefix.len()) == Some(&b'/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = RouteTable::parse(DEFAULT_ROUTES).unwrap();
        assert_eq!(
            t.find("/api/v1/payments/webhooks/stripe").unwrap().access,
            Access::Public
        );
        assert_eq!(
            t.find("/api/v1/payments").unwrap().access,
            Access::Protected
        );
        assert_eq!(t.find("/api/v1/auth/login").unwrap().service, "identity");
        assert!(t.find("/api/v1/authx").is_none());
        assert!(t.find("/internal").is_none());
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(RouteTable::parse("api=identity").is_err());
        assert!(RouteTable::parse("/a=identity:secret").is_err());
        assert!(RouteTable::parse("/a").is_err());
    }
}
