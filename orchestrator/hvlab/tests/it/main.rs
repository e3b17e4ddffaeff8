//! Integration tests of the hvlab binary.

mod bounded;
mod repro;
mod run;
mod support;
mod validate;
