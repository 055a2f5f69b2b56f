//! The identity service's own rules: what an email, a password and a role
//! are.

pub mod email;
pub mod password;
pub mod role;

pub use email::Email;
pub use password::{NewPassword, PasswordHasher};
pub use role::Role;
