//! The proxy: what goes to the peer and what comes back, as nginx's proxy module does it.
//!
//! Place in the data flow: route -> variables/script (`http::vars`, `http::script`) ->
//! **proxy**: [`request`] builds the upstream request head, [`response`] filters the upstream
//! response head into the one the client gets. Both are sans-IO; the engine owns the sockets.

pub mod request;
pub mod response;

#[cfg(test)]
mod tests;
