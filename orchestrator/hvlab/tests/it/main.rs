//! Integration tests of the hvlab binary.
