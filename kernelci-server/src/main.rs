//! The `kernelci-server` binary.
//!
//! It will parse the configuration (command line over environment over a TOML file
//! over defaults), install tracing, open the store, bind the listener and call
//! `kernelci_http::serve`. The HTTP layer lands with the server issue; until then the
//! binary says so and exits with a non-zero status.

fn main() {
    eprintln!(
        "kernelci-server {}: the HTTP server is not built yet; \
         kernelci-core is usable as a library (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
