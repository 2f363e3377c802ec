//! Fuzz target bodies; see `targets.rs` and docs/fuzzing.md.
#![allow(clippy::unwrap_used)]
pub mod targets;
