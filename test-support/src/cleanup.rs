//! Finishing async clean-up (dropping a schema, deleting queues) from a
//! `Drop`.

use std::future::Future;

/// Runs `cleanup` to completion on a thread and runtime of its own, and
/// waits for it. A `Drop` may run inside a test's runtime, where blocking on
/// a future is not allowed, or while a failed test unwinds; this works in
/// both. A panic inside `cleanup` is swallowed: clean-up must not hide the
/// test's own failure.
pub fn block_on<F>(cleanup: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime")
            .block_on(cleanup);
    });
    let _ = worker.join();
}
