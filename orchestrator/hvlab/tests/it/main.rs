//! Integration tests of the hvlab binary.

mod durability;
mod repro;
mod run;
mod support;
mod validate;
