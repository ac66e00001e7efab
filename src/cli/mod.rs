//! Command-line client commands (HTTP clients of the API) and developer tools.

pub mod client;
pub mod dev_receiver;
