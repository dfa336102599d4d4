//! The migration plan: what the user wrote (`file`, loaded with line:column by `load`), what it
//! means once checked (`check`, `refs`), the templates that render calls (`template`), a unit
//! expanded into its calls (`compiled`), and the stable ids every call gets (`ids`).

pub mod action;
pub mod check;
pub mod compiled;
pub mod custom_fields;
pub mod file;
pub mod ids;
pub mod lists;
pub mod load;
pub mod refs;
pub mod spans;
pub mod template;
