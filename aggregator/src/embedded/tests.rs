//! Tests of the embedded store driven through its engine and its backend.
