//! rustls needs a process-wide crypto provider; we use ring (no C toolchain beyond cc,
//! no network at build time).

pub fn install_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
