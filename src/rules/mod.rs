//! Rules: the schema of rule files, message templates and evaluation. Pure.

pub mod eval;
pub mod model;
pub mod template;

pub use model::{Action, Localized, Problem, Rule};
pub use template::Template;
