//! Signatures of projects' app modules: written with the project (in its
//! creation transaction); the lease queries read them back with every copy
//! handed out (`scheduling::assignment`).

use super::Result;
use super::backend::{Tx, query};
use crate::domain::ProjectId;
use crate::domain::signing::AppSignature;

/// Records the signature of project `project_id`'s app, if it has one.
pub(super) async fn record(
    tx: &mut Tx<'static>,
    project_id: ProjectId,
    signature: Option<&AppSignature>,
) -> Result<()> {
    if let Some(signature) = signature {
        query("UPDATE projects SET app_signature = ?, app_public_key = ? WHERE id = ?")
            .bind(signature.signature())
            .bind(signature.public_key())
            .bind(project_id.0)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
