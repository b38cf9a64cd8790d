//! The `paas` command-line client: one file per command group.

pub mod data;
