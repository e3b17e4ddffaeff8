//! Integration tests of the hvlab binary.

mod bounded;
mod causes;
mod docs;
mod durability;
mod halt;
mod hog;
mod infra;
mod known;
mod load;
mod repro;
mod run;
mod support;
mod validate;
