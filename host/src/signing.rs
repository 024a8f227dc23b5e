//! Request signing. Pure functions: no IO, no clock; callers pass the timestamp.

pub mod top;
