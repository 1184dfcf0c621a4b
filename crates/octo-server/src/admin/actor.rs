//! Who is making an admin request: set by the admin listener's authentication as a request
//! extension, read by whatever records a change (the audit trail) or answers "who am I".

use std::fmt;

/// The authenticated caller of an admin route.
///
/// ```
/// use octo_server::admin::Actor;
/// assert_eq!(Actor::Token(0).to_string(), "token:0");
/// assert_eq!(Actor::User("ada".into()).to_string(), "user:ada");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A bearer token, by its position in `admin.tokens` (never the token itself).
    Token(usize),
    /// A signed-in admin user (a panel session), by name.
    User(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Token(i) => write!(f, "token:{i}"),
            Actor::User(name) => write!(f, "user:{name}"),
        }
    }
}
