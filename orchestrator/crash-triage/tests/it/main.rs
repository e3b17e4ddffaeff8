//! Integration tests for crash-triage: one binary, one module per concern.

mod common;
mod roundtrip;
