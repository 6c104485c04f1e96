//! Splits a loop across the thread pool tract runs the plan with, so no second pool competes.

use std::ops::Range;
use std::sync::Mutex;

use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

/// `f` over `0..n`, cut into one contiguous range per thread of the current executor. Each range
/// runs single-threaded as far as tract is concerned, so a product inside does not split again.
pub fn for_each_range<F>(n: usize, f: F) -> TractResult<()>
where
    F: Fn(Range<usize>) -> TractResult<()> + Sync,
{
    let pool = match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 && n > 1 => pool,
        _ => return f(0..n),
    };
    let parts = pool.current_num_threads().min(n);
    let failed: Mutex<Option<TractError>> = Mutex::new(None);
    pool.scope(|s| {
        for part in 0..parts {
            let (f, failed) = (&f, &failed);
            s.spawn(move |_| {
                let range = n * part / parts..n * (part + 1) / parts;
                if let Err(e) = multithread_tract_scope(Executor::SingleThread, || f(range)) {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A pointer the ranges of [`for_each_range`] write through, each to its own disjoint part.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);

// SAFETY: every user writes disjoint regions from different threads and joins before reading.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
