//! Integration tests of the sim kernel through its public API (one binary, modules below).

mod core_flavours;
mod faults;
mod hook;
mod rules;
mod stress;
mod support;
mod tools;
