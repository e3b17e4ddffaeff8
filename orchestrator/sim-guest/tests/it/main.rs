//! Integration tests of the simulated guest: protocol, then a booted guest end to end.

mod protocol;
