//! Integration tests of the hvlab binary.

mod bounded;
mod causes;
mod ci;
mod ci_docs;
mod docs;
mod durability;
mod hog;
mod infra;
mod load;
mod repro;
mod run;
mod support;
mod validate;
