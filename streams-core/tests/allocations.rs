#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A record moves from node to node without a heap allocation: the same topology with 1
//! and with 41 stateless hops costs the same number of allocations per input record
//! (counted by a global allocator, on the test's own thread only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use streams_core::{
    I64Serde, Processor, ProcessorContext, Record, Result, Sink, Source, StreamsConfig, Topology,
    TopologyTestDriver,
};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting the allocations of threads that turned counting on.
struct CountingAllocator;

fn count_one() {
    // `try_with`: thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only delegates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by this thread while `f` runs.
fn allocations_of(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Adds one to the value.
struct AddOne;
impl Processor<i64, i64> for AddOne {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, i64, i64>,
        r: Record<i64, i64>,
    ) -> Result<()> {
        let v = r.value + 1;
        ctx.forward(r.with_value(v))
    }
}

/// source → `hops` × AddOne → sink.
fn chain(hops: usize) -> Topology {
    let mut t = Topology::new();
    t.add_source(
        Source::<i64, i64>::new("in", ["input"])
            .key_serde(I64Serde)
            .value_serde(I64Serde),
    )
    .unwrap();
    let mut parent = "in".to_owned();
    for i in 0..hops {
        let name = format!("add-{i}");
        t.add_processor(&name, || AddOne, &[parent.as_str()])
            .unwrap();
        parent = name;
    }
    t.add_sink(
        Sink::<i64, i64>::new("out", "output")
            .key_serde(I64Serde)
            .value_serde(I64Serde),
        &[parent.as_str()],
    )
    .unwrap();
    t
}

/// Allocations per input record through `chain(hops)`, after a warm-up.
fn allocations_per_record(hops: usize) -> f64 {
    let driver = TopologyTestDriver::new(chain(hops), StreamsConfig::new("alloc-test")).unwrap();
    let input = driver
        .create_input_topic("input", I64Serde, I64Serde)
        .unwrap();
    let output = driver.create_output_topic("output", I64Serde, I64Serde);
    for i in 0..200 {
        input.pipe_input_with_timestamp(i, 0, i).unwrap();
    }
    const N: i64 = 2_000;
    let n = allocations_of(|| {
        for i in 0..N {
            input.pipe_input_with_timestamp(i, 0, 1_000 + i).unwrap();
        }
    });
    let out = output.read_records_to_vec().unwrap();
    assert_eq!(out.len(), 200 + N as usize);
    assert!(
        out.iter().all(|r| r.value == hops as i64),
        "every record took every hop"
    );
    n as f64 / N as f64
}

#[test]
fn stateless_hops_allocate_nothing() {
    let one = allocations_per_record(1);
    let many = allocations_per_record(41);
    let per_hop = (many - one) / 40.0;
    eprintln!("allocations per record: 1 hop {one:.3}, 41 hops {many:.3}; per hop {per_hop:.4}");
    // Boxing a key and a value at each hop would cost 2 per hop (80 per record here).
    assert!(
        per_hop.abs() < 0.01,
        "{per_hop} allocations per stateless hop"
    );
}
