//! The one place where errors become `tonic::Status`. Every match is
//! exhaustive, so a new error variant forces a decision about its code.
//! `Internal` never carries database text to a client: it is logged here.

use tonic::Status;

use crate::domain::access::AccessError;
use crate::domain::app::AppError;
use crate::domain::files::FileError;
use crate::domain::lifecycle::ReportError;
use crate::domain::names::NameError;
use crate::domain::policy::PolicyError;
use crate::domain::rate::Limited;
use crate::domain::signing::SignatureError;
use crate::file_store::FileStoreError;
use crate::store;

impl From<store::Error> for Status {
    fn from(error: store::Error) -> Status {
        use store::Error as E;
        match error {
            E::ProjectNotFound(_) | E::AppNotFound(_) | E::BatchNotFound { .. } | E::WorkUnitNotFound { .. } => {
                Status::not_found(error.to_string())
            }
            E::NotFailed { .. } | E::NothingToRetry(_) => Status::failed_precondition(error.to_string()),
            E::ProjectExists(_) | E::DuplicateWorkUnit { .. } => Status::already_exists(error.to_string()),
            E::ProjectCancelled(_) | E::CopiesInProgress { .. } => Status::failed_precondition(error.to_string()),
            E::UnknownHost => Status::unauthenticated(error.to_string()),
            E::Report(report) => Status::from(report),
            E::OutputTooLarge { .. } => Status::invalid_argument(error.to_string()),
            E::FileNotUploaded { .. } => Status::failed_precondition(error.to_string()),
            E::FileSizeMismatch { .. } => Status::invalid_argument(error.to_string()),
            E::Files(error) => Status::from(error),
            E::Closed => Status::unavailable(error.to_string()),
            E::Unavailable(_) => {
                tracing::warn!(error = %error, "the database cannot be reached");
                Status::unavailable(error.to_string())
            }
            E::Conflict(_) => Status::aborted(error.to_string()),
            E::CannotWrite(_) => {
                tracing::error!(error = %error, "the database cannot be written");
                Status::resource_exhausted(error.to_string())
            }
            E::Corrupt { .. }
            | E::NotWritable { .. }
            | E::Database(_)
            | E::Migrate(_)
            | E::Validator(_)
            | E::GroupCommit(_)
            | E::Writer(_)
            | E::File { .. } => {
                tracing::error!(error = %error, "store error");
                Status::internal("internal error in the coordinator's store (logged)")
            }
        }
    }
}

impl From<FileError> for Status {
    fn from(error: FileError) -> Status {
        match error {
            FileError::BadName(..)
            | FileError::BadDigest { .. }
            | FileError::Duplicate(_)
            | FileError::Shadows(_)
            | FileError::TooManyInputs { .. }
            | FileError::TooManyOutputs { .. }
            | FileError::OutputsOverLimit { .. }
            | FileError::InputsOverLimit { .. }
            | FileError::LimitTooLarge { .. } => Status::invalid_argument(error.to_string()),
        }
    }
}

impl From<FileStoreError> for Status {
    fn from(error: FileStoreError) -> Status {
        match error {
            FileStoreError::DigestMismatch { .. } | FileStoreError::SizeMismatch { .. } => {
                Status::invalid_argument(error.to_string())
            }
            FileStoreError::Missing(_) => Status::not_found(error.to_string()),
            FileStoreError::OffsetPastEnd { .. } => Status::out_of_range(error.to_string()),
            FileStoreError::Io { ref source, .. } if source.raw_os_error() == Some(28) => {
                tracing::error!(error = %error, "the file store's disk is full");
                Status::resource_exhausted("the coordinator's file store is out of disk space; nothing was kept")
            }
            FileStoreError::Io { .. } => {
                tracing::error!(error = %error, "file store error");
                Status::internal("internal error in the coordinator's file store (logged)")
            }
        }
    }
}

impl From<ReportError> for Status {
    fn from(error: ReportError) -> Status {
        match error {
            ReportError::NotYourResult { .. } => Status::permission_denied(error.to_string()),
            ReportError::ConflictingReport { .. } => Status::already_exists(error.to_string()),
        }
    }
}

impl From<PolicyError> for Status {
    fn from(error: PolicyError) -> Status {
        match error {
            PolicyError::MinQuorumZero
            | PolicyError::QuorumAboveTarget { .. }
            | PolicyError::TotalBelowTarget { .. }
            | PolicyError::SuccessBelowQuorum { .. }
            | PolicyError::TooLarge { .. }
            | PolicyError::DeadlineZero
            | PolicyError::LimitZero { .. }
            | PolicyError::UnknownValidator(_) => Status::invalid_argument(format!("policy: {error}")),
        }
    }
}

impl From<NameError> for Status {
    fn from(error: NameError) -> Status {
        match error {
            NameError::Empty { .. }
            | NameError::TooLong { .. }
            | NameError::BadCharacter { .. }
            | NameError::ControlCharacter { .. } => Status::invalid_argument(error.to_string()),
        }
    }
}

/// A submitted module (an app or a custom validator) refused, naming the
/// request field that carried it.
pub fn refused_module(field: &str, error: AppError) -> Status {
    let message = format!("{field}: {error}");
    match error {
        AppError::Empty | AppError::Invalid(_) | AppError::NoStart | AppError::UnknownImports(_) => {
            Status::invalid_argument(message)
        }
        AppError::TooLarge(_) => Status::resource_exhausted(message),
    }
}

impl From<AccessError> for Status {
    fn from(error: AccessError) -> Status {
        match error {
            AccessError::OutsideScope { .. }
            | AccessError::AdminOnly
            | AccessError::HostToken
            | AccessError::ApiTokenAsHost => Status::permission_denied(error.to_string()),
        }
    }
}

impl From<SignatureError> for Status {
    fn from(error: SignatureError) -> Status {
        match error {
            SignatureError::Incomplete
            | SignatureError::BadPublicKey(_)
            | SignatureError::InvalidPublicKey
            | SignatureError::BadSignature(_)
            | SignatureError::DoesNotVerify => Status::invalid_argument(error.to_string()),
        }
    }
}

impl From<Limited> for Status {
    fn from(error: Limited) -> Status {
        let mut status = Status::resource_exhausted(error.to_string());
        status.metadata_mut().insert(quorum_proto::RETRY_AFTER_MS, error.retry_after_ms.into());
        status
    }
}

/// A request field that is missing or out of range.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {problem}"))
}
