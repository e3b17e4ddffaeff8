//! Integration tests of the hvlab binary.

mod repro;
mod run;
mod support;
mod validate;
