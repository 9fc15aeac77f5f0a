//! Signed apps on the wire: every copy handed out carries its project's app
//! signature and public key (empty for an unsigned project), so that workers
//! can verify the module before running it.

use quorum_proto::v1::Assignment;
use tonic::Status;

use super::Context;

/// Fills in the app signature of each assignment's project.
pub async fn attach_signatures(ctx: &Context, assignments: &mut [Assignment]) -> Result<(), Status> {
    if assignments.is_empty() {
        return Ok(());
    }
    let mut projects: Vec<&str> = assignments.iter().map(|a| a.project.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    let signatures = ctx.store.app_signatures(&projects).await?;
    for assignment in assignments.iter_mut() {
        if let Some(signature) = signatures.get(&assignment.project) {
            assignment.app_signature = signature.signature().to_vec();
            assignment.app_public_key = signature.public_key().to_vec();
        }
    }
    Ok(())
}
