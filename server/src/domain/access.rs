//! Who may do what on the `Projects` service: API tokens' roles and the one
//! function, [`Role::authorize`], that decides whether a role may take an
//! action. Volunteer hosts are not API callers at all: their tokens only work
//! on the scheduler, and the RPC layer refuses them before asking this module.

use std::fmt;

use super::names::ProjectName;

/// What an API token lets its holder do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything: every project, the host list, tokens.
    Admin,
    /// Submission and follow-up of the named projects only: create them,
    /// add work units, read their status, work units and results, wait for
    /// them, cancel, retry, resume and purge them. Never the host list.
    Submit { projects: Vec<ProjectName> },
}

/// One action on the `Projects` service, as far as access is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Creating the project of this name.
    CreateProject(&'a ProjectName),
    /// Anything else on one project (add work units, read, wait, cancel,
    /// retry, resume, purge).
    OnProject(&'a ProjectName),
    /// Reading every project's status at once: allowed to every API role,
    /// a submit token seeing only its projects (see [`Role::sees`]).
    StatusOfAll,
    /// Listing volunteer hosts (their names, counters and credit).
    ListHosts,
}

/// Why a role may not take an action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this token may not act on project {project:?} (it is limited to {scope})")]
    OutsideScope { project: String, scope: Scope },
    #[error("listing hosts needs an admin token")]
    AdminOnly,
    #[error("a volunteer host's token cannot call the Projects service; use an API token")]
    HostToken,
    #[error("an API token cannot act as a volunteer host; register the host instead")]
    ApiTokenAsHost,
}

/// The projects of a submit token, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(pub Vec<String>);

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("no project") } else { write!(f, "{}", self.0.join(", ")) }
    }
}

impl Role {
    /// A submit role over `projects` (duplicates dropped, order kept sorted).
    pub fn submit(projects: impl IntoIterator<Item = ProjectName>) -> Role {
        let mut projects: Vec<ProjectName> = projects.into_iter().collect();
        projects.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        projects.dedup();
        Role::Submit { projects }
    }

    /// The role's name as stored and printed: "admin" or "submit".
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submit { .. } => "submit",
        }
    }

    /// Whether this role may see the project named `project` (in listings
    /// such as the status of every project).
    pub fn sees(&self, project: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Submit { projects } => projects.iter().any(|p| p.as_str() == project),
        }
    }

    /// Whether this role may take `action`.
    pub fn authorize(&self, action: Action<'_>) -> Result<(), AccessError> {
        match (self, action) {
            (Role::Admin, _) => Ok(()),
            (Role::Submit { .. }, Action::StatusOfAll) => Ok(()),
            (Role::Submit { .. }, Action::ListHosts) => Err(AccessError::AdminOnly),
            (Role::Submit { projects }, Action::CreateProject(name) | Action::OnProject(name)) => {
                if projects.contains(name) {
                    Ok(())
                } else {
                    Err(AccessError::OutsideScope {
                        project: name.to_string(),
                        scope: Scope(projects.iter().map(ToString::to_string).collect()),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ProjectName {
        ProjectName::parse(text).expect("a valid name")
    }

    #[test]
    fn authorize() {
        let check = |role: &Role, action: Action<'_>, expected: Result<(), &str>| {
            let actual = role.authorize(action).map_err(|error| error.to_string());
            assert_eq!(actual, expected.map_err(str::to_owned), "{role:?} {action:?}");
        };
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let admin = Role::Admin;
        let submit = Role::submit([b.clone(), a.clone(), a.clone()]);
        assert_eq!(submit, Role::Submit { projects: vec![a.clone(), b.clone()] }, "sorted, deduplicated");
        for action in [Action::CreateProject(&c), Action::OnProject(&c), Action::StatusOfAll, Action::ListHosts] {
            check(&admin, action, Ok(()));
        }
        check(&submit, Action::CreateProject(&a), Ok(()));
        check(&submit, Action::OnProject(&b), Ok(()));
        check(&submit, Action::StatusOfAll, Ok(()));
        check(
            &submit,
            Action::CreateProject(&c),
            Err("this token may not act on project \"c\" (it is limited to a, b)"),
        );
        check(&submit, Action::OnProject(&c), Err("this token may not act on project \"c\" (it is limited to a, b)"));
        check(&submit, Action::ListHosts, Err("listing hosts needs an admin token"));
        check(
            &Role::submit([]),
            Action::OnProject(&a),
            Err("this token may not act on project \"a\" (it is limited to no project)"),
        );
    }

    #[test]
    fn sees() {
        let submit = Role::submit([name("a")]);
        assert!(submit.sees("a"));
        assert!(!submit.sees("b"));
        assert!(Role::Admin.sees("b"));
    }
}
