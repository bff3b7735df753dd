//! Damaged document bytes cannot make the decoder reserve memory out of proportion
//! to the input (a counting allocator measures the peak).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// test code
// A counting global allocator is the one way to measure allocations; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kernelci_core::node::Node;
use kernelci_core::time::Timestamp;
use kernelci_store::codec::{decode_node, encode_node};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn nested_huge_counts_reserve_little() {
    // A valid node whose `data` is empty, so that the document ends with `data`'s
    // element count (0): replace that count with 600 nested objects, each claiming
    // 100,000 entries, then padding so every claim is within the bytes left.
    let mut node = Node::new("test", "t", Timestamp::now());
    node.debug = None;
    node.artifacts = None;
    let mut doc = Vec::new();
    encode_node(&node, &mut doc).unwrap();
    assert_eq!(
        doc.pop(),
        Some(0),
        "the document ends with data's empty count"
    );
    for _ in 0..600 {
        doc.extend_from_slice(&[0xA0, 0x8D, 0x06]); // varint 100,000
        doc.extend_from_slice(&[0, 8]); // key 0 ("kernel_revision"), tag: object
    }
    doc.extend(std::iter::repeat_n(0u8, 100_000));
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    assert!(decode_node(&doc).is_err());
    let peak = PEAK.load(Ordering::SeqCst) - before;
    assert!(
        peak < 16 << 20,
        "decoding {} bytes reserved {peak} bytes",
        doc.len()
    );
}
