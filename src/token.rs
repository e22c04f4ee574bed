//! `sosrouter token new`: a fresh admin API token and the `[[admin.token]]`
//! table that admits it. The token is made and hashed in
//! [`crate::admin::auth`]; this module checks the command's options and
//! writes what the operator sees.

use crate::admin::auth;
use crate::config::Role;

/// What `token new` prints for a fresh token of `role`, named `name` (the
/// name written into the audit log with each change): the token alone on
/// the first line, for scripts, then the `[[admin.token]]` table to paste
/// into the configuration, which holds only the token's SHA-256. The token
/// is stored nowhere and cannot be shown again.
///
/// A tenant-admin token needs a `tenant`, an operator token has none (a
/// blank tenant counts as none), and the name must not be blank; the error
/// says which.
pub fn new(role: Role, tenant: Option<&str>, name: &str) -> Result<String, String> {
    let tenant = tenant.filter(|t| !t.trim().is_empty());
    match (role, tenant) {
        (Role::TenantAdmin, None) => return Err("a tenant-admin token needs --tenant".into()),
        (Role::Operator, Some(_)) => return Err("an operator token has no tenant".into()),
        _ => {}
    }
    if name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    let (token, digest) = auth::new_token();
    Ok(format!(
        "{token}\n\n\
         # Add this table to the configuration, then reload (SIGHUP).\n\
         # The token above is shown once; the configuration keeps its SHA-256.\n\
         {}",
        auth::toml_table(name, role, tenant, &digest)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_token_then_a_table_that_admits_it() {
        let text = new(Role::TenantAdmin, Some("acme"), "bob").unwrap();
        let (token, rest) = text.split_once('\n').unwrap();
        assert!(token.starts_with("sos_"));
        assert!(rest.starts_with("\n# Add this table"));
        let table: toml::Value = toml::from_str(rest).unwrap();
        let entry = &table["admin"]["token"][0];
        assert_eq!(entry["tenant"].as_str(), Some("acme"));
        let configured = crate::config::TokenConfig {
            name: "bob".into(),
            role: Role::TenantAdmin,
            tenant: Some("acme".into()),
            sha256: entry["sha256"].as_str().unwrap().into(),
        };
        let known = auth::tokens(&[configured]);
        assert_eq!(auth::authenticate(&known, token).unwrap().name, "bob");
    }

    #[test]
    fn role_tenant_and_name_must_fit() {
        assert!(new(Role::TenantAdmin, None, "bob")
            .unwrap_err()
            .contains("needs --tenant"));
        assert!(new(Role::TenantAdmin, Some(" "), "bob").is_err());
        assert!(new(Role::Operator, Some("acme"), "ops")
            .unwrap_err()
            .contains("has no tenant"));
        assert!(new(Role::Operator, Some(""), "ops").is_ok());
        assert!(new(Role::Operator, None, " ")
            .unwrap_err()
            .contains("--name"));
    }
}
