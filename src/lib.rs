//! Support shared by the workspace's examples and end-to-end tests: the
//! example app ([`demo_app`]), the quick start ([`quickstart`]), and the
//! private servers that fault tests start ([`harness`]).

pub mod demo_app;
pub mod harness;
pub mod quickstart;
