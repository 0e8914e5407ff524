//! Support shared by the workspace's examples and end-to-end tests: the
//! private servers that fault tests start, and small helpers to drive an app.

pub mod harness;
