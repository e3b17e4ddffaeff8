//! Integration tests of the hvlab binary.

mod both_labs;
mod bounded;
mod browser;
mod causes;
mod ci;
mod ci_docs;
mod console;
mod docs;
mod durability;
mod expect;
mod halt;
mod hog;
mod hook;
mod infra;
mod known;
mod load;
mod repro;
mod run;
mod support;
mod upstream;
mod validate;
