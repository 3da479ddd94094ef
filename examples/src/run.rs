//! Small pieces the example binaries share when they run until stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streams_core::StreamsApp;

/// A flag set once Ctrl-C (SIGINT) arrives, watched from a background thread.
pub fn ctrl_c_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            let _ = rt.block_on(tokio::signal::ctrl_c());
        }
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// Prints `tasks owned: <ids>`, the active tasks of this instance (after each rebalance).
pub fn print_tasks(app: &StreamsApp) {
    let tasks: Vec<String> = app.active_tasks().iter().map(ToString::to_string).collect();
    println!("tasks owned: {}", tasks.join(" "));
}
