//! Shared helpers for the ledger's integration tests.
#![allow(dead_code)]

pub(crate) mod naive;
pub(crate) mod pg;
