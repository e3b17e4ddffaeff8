//! Integration tests of the hvlab binary.

mod run;
mod support;
mod validate;
