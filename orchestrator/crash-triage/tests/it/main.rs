//! Integration tests for crash-triage: one binary, one module per concern.

mod analyze;
mod broken;
mod buckets;
mod common;
mod cpp_reader;
mod fuzz;
mod report;
mod roundtrip;
mod small;
mod unloaded;
