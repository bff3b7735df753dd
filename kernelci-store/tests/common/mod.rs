//! Helpers shared by the tests that look at a sled store's files behind its back.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code

/// Opens the sled directory directly, waiting for a closed store's lock to go.
pub fn raw_open(dir: &std::path::Path) -> sled::Db {
    let started = std::time::Instant::now();
    loop {
        // With the compression setting the store was created with.
        let config = kernelci_store::sled_config(dir, 0).unwrap();
        match config.open() {
            Ok(db) => return db,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(5) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
