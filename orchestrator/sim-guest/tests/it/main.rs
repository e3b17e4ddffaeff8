//! Integration tests of the simulated guest: protocol, then a booted guest end to end.

mod crash;
mod exec;
mod files;
mod power;
mod process;
mod protocol;
mod robustness;
mod services;
mod support;
