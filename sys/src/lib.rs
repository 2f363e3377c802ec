//! Paddock's system calls. `sys` is the router side's one module with `unsafe` (credential
//! switch between `fork` and `exec`, descriptors from raw system calls); `safefs` is root-side
//! file access on tenant paths, built on it. Both are re-exported here: `paddock_sys::prepare`,
//! `paddock_sys::safefs::open`.

pub mod safefs;
mod sys;

pub use sys::*;
