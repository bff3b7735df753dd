//! Writes the fuzz seed corpus (`fuzz/corpus/<target>/`) from the same generators the
//! proptests use, with a fixed seed, plus hand-written seeds from the spec's examples.
//!
//! ```sh
//! cargo run -p kernelci-core --features arbitrary --example gen_fuzz_corpus
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use kernelci_core::arbitrary::{json_value, query_pairs};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

const QUERY_SEEDS: &[&str] = &[
    "kind=kbuild&created__gt=2024-01-01&name__re=x86&data.arch__in=arm64,x86_64&result=null",
    "state=done&processed_by_kcidb_bridge=False&created__gt=2024-01-02+03:04:05.678901&limit=100",
    "state=available&holdoff__lt=2024-01-02T03:04:05.678901%2B00:00&limit=100&offset=200",
    "data.kernel_revision.version.patchlevel__int=2&name__foo=bar&parent=null&sort=-created",
    "name__re=(?i)^KB&retry_counter__in=1,2&timeout__lt=2100-01-01T00:00:00%2B02:00",
    "path=checkout&kind__nin=kbuild,job&name__ne=123&a__b__c=1",
    "created__gt=2024-W01-1&updated__lte=20240101T000000Z",
];

const NODE_SEEDS: &[&str] = &[
    r#"{"kind":"checkout","name":"checkout","path":["checkout"],"data":{"kernel_revision":{"tree":"mainline","url":"https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git","branch":"master","commit":"abc","version":{"version":"6","patchlevel":"8","extra":"-rc1"}}}}"#,
    r#"{"kind":"kbuild","name":"kbuild-gcc-12-x86","path":["checkout","kbuild-gcc-12-x86"],"state":"available","artifacts":{"kernel":"HTTP://Example.com"},"data":{"arch":"x86_64","defconfig":"defconfig","error_code":null}}"#,
    r#"{"kind":"test","name":"baseline","path":["a"],"data":{"misc":{},"test_source":"git://x/y"},"holdoff":1700000000,"timeout":"2030-01-01T00:00:00+02:00"}"#,
    r#"{"kind":"regression","name":"r","path":["r"],"data":{"node_sequence":["65a1355ee98651d0fe81e412"],"fail_node":"zz"}}"#,
    r#"{"node":{"kind":"kbuild","name":"k","path":["k"]},"child_nodes":[{"node":{"kind":"test","name":"t","path":["k","t"]}}]}"#,
    r#"{"state":"done","result":null,"data":{"a":1},"processed_by_kcidb_bridge":"True"}"#,
];

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn write_all(dir: &Path, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for s in seeds {
        fs::write(dir.join(format!("{:016x}", fnv(s))), s)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut runner = TestRunner::deterministic();

    let mut queries: Vec<Vec<u8>> = QUERY_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let strategy = query_pairs();
    for _ in 0..64 {
        let pairs = strategy
            .new_tree(&mut runner)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .current();
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        queries.push(qs.into_bytes());
    }
    write_all(&root.join("query_parse"), &queries)?;

    let mut nodes: Vec<Vec<u8>> = NODE_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let strategy = json_value();
    for _ in 0..64 {
        let v = strategy
            .new_tree(&mut runner)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .current();
        nodes.push(v.to_string().into_bytes());
    }
    write_all(&root.join("node_validate"), &nodes)?;
    Ok(())
}
