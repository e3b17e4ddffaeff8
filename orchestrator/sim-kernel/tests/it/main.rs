//! Integration tests of the sim kernel through its public API (one binary, modules below).

mod faults;
mod hook;
mod rules;
mod stress;
mod support;
mod tools;
