//! Paddock's router: the HTTP front door, rules engine, tenant registry and pool supervisor.
//!
//! The `paddock` binary is a thin wrapper around [`run`]. This crate never links Python: the
//! worker processes it supervises do.

pub mod diag;
pub mod path;
pub mod rules;
