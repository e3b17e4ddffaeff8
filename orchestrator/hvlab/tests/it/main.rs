//! Integration tests of the hvlab binary.

mod infra;
mod repro;
mod run;
mod support;
mod validate;
