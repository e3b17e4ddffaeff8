//! Integration tests of the hvlab binary.

mod bounded;
mod causes;
mod ci;
mod docs;
mod durability;
mod hog;
mod infra;
mod load;
mod repro;
mod run;
mod support;
mod validate;
