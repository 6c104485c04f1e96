//! Splits work across the thread pool tract runs the plan with, so no second pool competes.

use std::ops::Range;
use std::sync::Mutex;

use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

/// Threads of the executor tract currently runs with (1 when single-threaded).
pub fn threads() -> usize {
    threads_of(&current_tract_executor())
}

/// Threads of `executor` (1 when single-threaded).
pub fn threads_of(executor: &Executor) -> usize {
    match executor {
        Executor::MultiThread(pool) => pool.current_num_threads().max(1),
        _ => 1,
    }
}

/// `f` on each of `parts`, one task each on the current executor; the first error wins. Each
/// task runs single-threaded as far as tract is concerned, so a product inside does not split
/// again. With one part, or no pool, `f` runs here.
pub fn for_each_part<T, F>(parts: Vec<T>, f: F) -> TractResult<()>
where
    T: Send,
    F: Fn(T) -> TractResult<()> + Sync,
{
    let pool = match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 && parts.len() > 1 => pool,
        _ => return parts.into_iter().try_for_each(f),
    };
    let failed: Mutex<Option<TractError>> = Mutex::new(None);
    pool.scope(|s| {
        for part in parts {
            let (f, failed) = (&f, &failed);
            s.spawn(move |_| {
                if let Err(e) = multithread_tract_scope(Executor::SingleThread, || f(part)) {
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

/// `f` run on a thread of the current executor's pool, when there is one and this thread is not
/// already in it. The ranges `f` then splits its work into start on a worker that takes one
/// of them itself, and the others are picked up by workers still awake from the last split;
/// from outside the pool, each split is a round trip through the pool's sleeping threads.
pub fn in_pool<R, F>(f: F) -> R
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    match current_tract_executor() {
        Executor::MultiThread(pool)
            if pool.current_num_threads() > 1 && pool.current_thread_index().is_none() =>
        {
            let executor = Executor::MultiThread(pool.clone());
            pool.install(move || multithread_tract_scope(executor, f))
        }
        _ => f(),
    }
}

/// `f` (a run of a whole plan) on a thread of `executor`'s pool, with `executor` as tract's
/// current one. Every op of the plan then starts its splits from a worker, and between ops no
/// thread hands the work back and forth: run from outside the pool, each multi-threaded op was
/// a round trip to the pool's threads of its own.
pub fn run_in_pool<R, F>(executor: &Executor, f: F) -> R
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    multithread_tract_scope(executor.clone(), || in_pool(f))
}

/// `f` over `0..n`, cut into one contiguous range per thread of the current executor.
pub fn for_each_range<F>(n: usize, f: F) -> TractResult<()>
where
    F: Fn(Range<usize>) -> TractResult<()> + Sync,
{
    let parts = threads().min(n).max(1);
    let ranges = (0..parts)
        .map(|part| n * part / parts..n * (part + 1) / parts)
        .collect();
    for_each_part(ranges, f)
}

/// A pointer the ranges of [`for_each_range`] write through, each to its own disjoint part.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);

impl SharedMut {
    /// The pointer `count` values on. A method, so a closure that uses it captures the whole
    /// `SharedMut` and not its bare (not `Sync`) pointer field.
    ///
    /// # Safety
    /// As for `pointer::add`: the result must stay inside the same allocation.
    pub unsafe fn add(self, count: usize) -> *mut f32 {
        unsafe { self.0.add(count) }
    }
}

// SAFETY: every user writes disjoint regions from different threads and joins before reading.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
