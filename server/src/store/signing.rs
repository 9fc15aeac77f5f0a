//! Signatures of projects' app modules: written with the project (in its
//! creation transaction) and read back to go with every copy handed out.

use std::collections::HashMap;

use sqlx::Row;

use super::{Result, Store};
use crate::domain::ProjectId;
use crate::domain::signing::AppSignature;

/// Records the signature of project `project_id`'s app, if it has one.
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    project_id: ProjectId,
    signature: Option<&AppSignature>,
) -> Result<()> {
    if let Some(signature) = signature {
        sqlx::query("UPDATE projects SET app_signature = ?, app_public_key = ? WHERE id = ?")
            .bind(signature.signature())
            .bind(signature.public_key())
            .bind(project_id.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// The app signatures of the named projects that have one, by name.
    pub async fn app_signatures(&self, projects: &[&str]) -> Result<HashMap<String, AppSignature>> {
        let mut signatures = HashMap::new();
        for project in projects {
            let row = sqlx::query(
                "SELECT app_signature, app_public_key FROM projects \
                 WHERE name = ? AND app_signature IS NOT NULL AND app_public_key IS NOT NULL",
            )
            .bind(project)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                let signature =
                    AppSignature::from_stored(row.try_get("app_signature")?, row.try_get("app_public_key")?);
                signatures.insert((*project).to_owned(), signature);
            }
        }
        Ok(signatures)
    }
}
