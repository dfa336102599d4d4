//! The migration plan: model, loading, checks and templates (being built).

pub mod action;
pub mod check;
pub mod compiled;
pub mod file;
pub mod load;
pub mod refs;
pub mod spans;
pub mod template;
