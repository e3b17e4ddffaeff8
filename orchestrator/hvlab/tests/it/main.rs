//! Integration tests of the hvlab binary.

mod validate;
