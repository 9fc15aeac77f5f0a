//! API tokens of scientists and operators: creating, finding, listing and
//! revoking them, and the first-start bootstrap of an admin token. Only
//! SHA-256 hashes of tokens are stored, as for hosts.

use super::backend::{Tx, query, query_scalar};
use super::{Error, Result, Store};
use crate::domain::Timestamp;
use crate::domain::access::Role;
use crate::domain::names::ProjectName;

/// One API token as `quorum-server token list` shows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub role: Role,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a token presented to the coordinator is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An API token that is not revoked, with its id and role.
    Api { id: i64, role: Role },
    /// A volunteer host's token.
    Host,
    /// Nothing the coordinator issued (or a revoked API token).
    Unknown,
}

impl Store {
    /// Stores a new API token whose secret hashes to `token_hash`; returns its id.
    pub async fn create_api_token(&self, role: &Role, token_hash: &str, now: Timestamp) -> Result<i64> {
        let mut tx = self.write().await?;
        let id = insert_token(&mut tx, role, token_hash, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Stores an admin token hashing to `token_hash` if, and only if, no
    /// admin token is active (one transaction, so two coordinators starting
    /// on one database bootstrap one token). Returns whether it was stored.
    pub async fn bootstrap_admin_token(&self, token_hash: &str, now: Timestamp) -> Result<bool> {
        if self.has_admin_token().await? {
            return Ok(false);
        }
        let mut tx = self.write().await?;
        let n_admins: i64 = query_scalar("SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL")
            .fetch_one(&mut tx)
            .await?;
        if n_admins > 0 {
            return Ok(false);
        }
        insert_token(&mut tx, &Role::Admin, token_hash, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether an active (unrevoked) admin token exists.
    pub async fn has_admin_token(&self) -> Result<bool> {
        let n_admins: i64 = query_scalar("SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n_admins > 0)
    }

    /// What the token hashing to `token_hash` is.
    pub async fn token_kind(&self, token_hash: &str) -> Result<TokenKind> {
        let row = query("SELECT id, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            let id: i64 = row.try_get("id")?;
            let role: String = row.try_get("role")?;
            return Ok(TokenKind::Api { id, role: self.role(id, &role).await? });
        }
        let host: Option<i64> = query_scalar("SELECT id FROM hosts WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if host.is_some() { TokenKind::Host } else { TokenKind::Unknown })
    }

    /// Every API token, revoked ones included, by id.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>> {
        let rows =
            query("SELECT id, role, created_at, revoked_at FROM api_tokens ORDER BY id").fetch_all(&self.pool).await?;
        let mut tokens = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let role: String = row.try_get("role")?;
            tokens.push(ApiTokenInfo {
                id,
                role: self.role(id, &role).await?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            });
        }
        Ok(tokens)
    }

    /// Revokes API token `id`; false if there is no such token or it was
    /// already revoked.
    pub async fn revoke_api_token(&self, id: i64, now: Timestamp) -> Result<bool> {
        let done = query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The role of token `id`, stored as `kind`.
    async fn role(&self, id: i64, kind: &str) -> Result<Role> {
        match kind {
            "admin" => Ok(Role::Admin),
            "submit" => {
                let names: Vec<String> =
                    query_scalar("SELECT project FROM api_token_projects WHERE token_id = ? ORDER BY project")
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                let projects = names
                    .iter()
                    .map(|name| ProjectName::parse(name))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| Error::Corrupt { table: "api_token_projects", detail: error.to_string() })?;
                Ok(Role::submit(projects))
            }
            other => Err(Error::Corrupt { table: "api_tokens", detail: format!("unknown role {other:?}") }),
        }
    }
}

async fn insert_token(tx: &mut Tx<'static>, role: &Role, token_hash: &str, now: Timestamp) -> Result<i64> {
    let id: i64 = query_scalar("INSERT INTO api_tokens (token_hash, role, created_at) VALUES (?, ?, ?) RETURNING id")
        .bind(token_hash)
        .bind(role.kind())
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?;
    if let Role::Submit { projects } = role {
        for project in projects {
            query("INSERT INTO api_token_projects (token_id, project) VALUES (?, ?)")
                .bind(id)
                .bind(project.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn name(text: &str) -> ProjectName {
        ProjectName::parse(text).expect("a valid name")
    }

    #[tokio::test]
    async fn tokens_are_created_found_listed_and_revoked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("quorum.db")).await.expect("open store");

        assert!(store.bootstrap_admin_token("h-admin", T0).await.expect("bootstrap"));
        assert!(!store.bootstrap_admin_token("h-admin-2", T0).await.expect("second bootstrap"), "one admin is enough");
        let submit = Role::submit([name("b"), name("a")]);
        let id = store.create_api_token(&submit, "h-submit", T0).await.expect("create");

        assert_eq!(store.token_kind("h-admin").await.expect("kind"), TokenKind::Api { id: 1, role: Role::Admin });
        assert_eq!(store.token_kind("h-submit").await.expect("kind"), TokenKind::Api { id, role: submit.clone() });
        assert_eq!(store.token_kind("nothing").await.expect("kind"), TokenKind::Unknown);

        assert!(store.revoke_api_token(id, T0.plus_ms(5)).await.expect("revoke"));
        assert!(!store.revoke_api_token(id, T0.plus_ms(6)).await.expect("revoke again"));
        assert!(!store.revoke_api_token(99, T0).await.expect("revoke a missing token"));
        assert_eq!(store.token_kind("h-submit").await.expect("kind"), TokenKind::Unknown, "revoked");
        assert_eq!(
            store.list_api_tokens().await.expect("list"),
            vec![
                ApiTokenInfo { id: 1, role: Role::Admin, created_at: T0.0, revoked_at: None },
                ApiTokenInfo { id, role: submit, created_at: T0.0, revoked_at: Some(T0.0 + 5) },
            ]
        );

        // Revoking the last admin token lets the next start bootstrap another.
        assert!(store.revoke_api_token(1, T0).await.expect("revoke the admin"));
        assert!(store.bootstrap_admin_token("h-admin-3", T0).await.expect("bootstrap again"));
    }
}
