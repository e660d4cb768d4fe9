//! Unit tests of the HTTP layer, one file per module, through the public API.

mod body;
mod headers;
mod no_panic;
mod request;
mod response;
