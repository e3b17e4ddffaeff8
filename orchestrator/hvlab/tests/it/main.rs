//! Integration tests of the hvlab binary.

mod hog;
mod load;
mod repro;
mod run;
mod support;
mod validate;
