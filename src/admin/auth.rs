//! Bearer tokens of the admin API. The configuration holds each token's
//! SHA-256 only; a request's token is hashed and compared with every
//! configured digest in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Role, TokenConfig};

/// A configured token, its digest decoded.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    digest: [u8; 32],
}

/// Decodes the configured tokens (the configuration checked their form).
pub fn tokens(config: &[TokenConfig]) -> Vec<Token> {
    config
        .iter()
        .filter_map(|t| {
            let bytes = hex::decode(&t.sha256).ok()?;
            let digest: [u8; 32] = bytes.try_into().ok()?;
            Some(Token {
                name: t.name.clone(),
                role: t.role,
                tenant: t.tenant.clone(),
                digest,
            })
        })
        .collect()
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Operators reach every tenant; a tenant admin only its own.
    pub fn may_access(&self, tenant: &str) -> bool {
        self.is_operator() || self.tenant.as_deref() == Some(tenant)
    }
}

/// The principal of a presented token, if it is one of `known`. Every
/// digest is compared, whichever matches.
pub fn authenticate(known: &[Token], presented: &str) -> Option<Principal> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for t in known {
        if bool::from(t.digest.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found.map(|t| Principal {
        name: t.name.clone(),
        role: t.role,
        tenant: t.tenant.clone(),
    })
}

/// The token in an `Authorization: Bearer ...` value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A fresh token (`sos_` and 64 hex digits: 256 random bits) and its
/// SHA-256 in hex.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("sos_{}", hex::encode(bytes));
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    (token, digest)
}

/// The `[[admin.token]]` table for a token.
pub fn toml_table(name: &str, role: Role, tenant: Option<&str>, digest: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = format!(
        "[[admin.token]]\nname = {}\nrole = {}\n",
        q(name),
        q(role.as_str())
    );
    if let Some(tenant) = tenant {
        t.push_str(&format!("tenant = {}\n", q(tenant)));
    }
    t.push_str(&format!("sha256 = {}\n", q(digest)));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_digest() {
        let (token, digest) = new_token();
        assert!(token.starts_with("sos_") && token.len() == 68);
        let table = toml_table("ops \"one\"", Role::TenantAdmin, Some("acme"), &digest);
        let config: toml::Value = toml::from_str(&table).unwrap();
        let t = &config["admin"]["token"][0];
        assert_eq!(t["name"].as_str(), Some("ops \"one\""));
        assert_eq!(t["role"].as_str(), Some("tenant-admin"));
        let cfg = vec![
            TokenConfig {
                name: "other".into(),
                role: Role::Operator,
                tenant: None,
                sha256: "ab".repeat(32),
            },
            TokenConfig {
                name: "mine".into(),
                role: Role::TenantAdmin,
                tenant: Some("acme".into()),
                sha256: digest.to_ascii_uppercase(),
            },
        ];
        let known = tokens(&cfg);
        let p = authenticate(&known, &token).unwrap();
        assert_eq!(p.name, "mine");
        assert!(p.may_access("acme") && !p.may_access("globex"));
        assert!(authenticate(&known, "sos_wrong").is_none());
        assert_eq!(bearer("Bearer  abc "), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
