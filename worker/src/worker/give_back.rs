//! Giving work back: `quorum-worker abort RESULT_ID` gives up one task and
//! `quorum-worker detach URL` gives up a coordinator (what is finished is
//! reported, the rest given back, then the coordinator is forgotten). The
//! commands leave a request in the journal and send SIGHUP; the worker acts
//! on it here, also at start for requests left while no worker ran. A task
//! given back is reported as a client error with no fuel used, so the
//! coordinator sends a new copy to another host at once, not at the deadline.

use tracing::{info, warn};

use super::*;
use crate::journal::Request;
use crate::reports::{GiveBack, given_back};

impl Worker {
    /// Acts on the journal's requests. An abort is done once its task is
    /// given back (or was finished anyway); a detach stays in the journal
    /// until [`Worker::complete_detaches`] forgets the coordinator.
    pub(super) async fn take_requests(&mut self) -> anyhow::Result<()> {
        for request in self.journal.requests().await? {
            let server = match &request {
                Request::Abort { server, .. } | Request::Detach { server } => server.clone(),
            };
            let Some(index) = self.attachments.iter().position(|a| a.server == server && !a.detached) else {
                warn!(server = %server, "a request for a coordinator this worker does not work for; dropped");
                self.journal.request_done(&request).await?;
                continue;
            };
            match request {
                Request::Abort { result_id, .. } => {
                    self.give_back(index, &[result_id], GiveBack::Abort).await?;
                    self.journal.request_done(&request).await?;
                }
                Request::Detach { .. } if !self.attachments[index].detaching => {
                    self.attachments[index].detaching = true;
                    let held: Vec<i64> =
                        self.queue.keys().chain(self.running.keys()).filter(|k| k.0 == index).map(|k| k.1).collect();
                    info!(
                        server = %server,
                        given_back = held.len(),
                        to_report = self.unreported[index].len(),
                        "detaching: giving back {} tasks",
                        held.len()
                    );
                    self.give_back(index, &held, GiveBack::Detach).await?;
                }
                Request::Detach { .. } => {}
            }
        }
        Ok(())
    }

    /// Gives back `result_ids` of coordinator `index`: queued ones at once
    /// (journalled as finished with a given-back report), running ones once
    /// they stop. A task already finished is reported as it is.
    async fn give_back(&mut self, index: usize, result_ids: &[i64], why: GiveBack) -> anyhow::Result<()> {
        let mut completed = Vec::new();
        for &result_id in result_ids {
            let key = (index, result_id);
            if let Some(queued) = self.queue.remove(&key) {
                info!(server = %self.attachments[index].server, result_id, "gave back result");
                completed.push(Completed::unrun(index, queued.assignment.app_digest, given_back(result_id, why)));
            } else if let Some(running) = self.running.get_mut(&key) {
                running.fate = Some(Fate::GiveBack(why));
                running.control.abort();
            } else if self.unreported[index].iter().any(|u| u.report.result_id == result_id) {
                info!(result_id, "not given back: it finished, and is reported as it is");
            } else {
                warn!(server = %self.attachments[index].server, result_id, "no such task to give back");
            }
        }
        self.record_finished(completed).await
    }

    /// Forgets each detaching coordinator that holds nothing any more (every
    /// report accepted, nothing queued or running, no call in flight).
    pub(super) async fn complete_detaches(&mut self) -> anyhow::Result<()> {
        for index in 0..self.attachments.len() {
            let attachment = &self.attachments[index];
            let holds = self.queue.keys().chain(self.running.keys()).any(|k| k.0 == index)
                || !self.unreported[index].is_empty();
            if !attachment.detaching || attachment.detached || attachment.busy || holds {
                continue;
            }
            let server = attachment.server.clone();
            for result_id in self.journal.detach(&server).await? {
                self.remove_checkpoint(&server, result_id);
            }
            self.attachments[index].detached = true;
            info!(server = %server, "detached: the coordinator is forgotten");
        }
        Ok(())
    }
}
