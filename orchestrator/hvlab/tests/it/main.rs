//! Integration tests of the hvlab binary.

mod causes;
mod repro;
mod run;
mod support;
mod validate;
