//! Splits work across the thread pool tract runs the plan with, so no second pool competes.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
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
///
/// While `f` runs, the pool's other threads wait for its splits spinning, not asleep: a thread
/// woken from sleep for each split of each op costs a wake-up on every split, and on a busy
/// virtual machine a sleeping core can take long to come back. ONNX Runtime's pool spins the
/// same way by default. Between runs they sleep as usual. With no executor (a plan built
/// without one), `f` runs here.
pub fn run_in_pool<R, F>(executor: Option<&Executor>, f: F) -> R
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    let Some(executor) = executor else {
        return f();
    };
    let pool = match executor {
        Executor::MultiThread(pool)
            if pool.current_num_threads() > 1 && pool.current_thread_index().is_none() =>
        {
            pool
        }
        _ => return multithread_tract_scope(executor.clone(), || in_pool(f)),
    };
    let done = AtomicBool::new(false);
    pool.install(|| {
        let runner = rayon::current_thread_index();
        rayon::scope(|s| {
            for _ in 1..pool.current_num_threads() {
                let done = &done;
                s.spawn(move |_| keep_warm(done, runner));
            }
            // Set however `f` ends: a panic must not leave the scope waiting on spinners.
            let _done = SetOnDrop(&done);
            multithread_tract_scope(executor.clone(), f)
        })
    })
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs the pool's pending work until `done`, spinning in between. A no-op on the thread that
/// runs the plan (`runner`), which can pick this task up itself while it waits inside a split:
/// spinning there would wait for its own run to end.
fn keep_warm(done: &AtomicBool, runner: Option<usize>) {
    if rayon::current_thread_index() == runner {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits inside a run on the pool finish, with the pool's other threads kept awake, at 2
    /// and 3 threads and many times over: no thread waits on its own spinner.
    #[test]
    fn runs_in_pool_with_splits_finish_and_add_up() {
        for threads in [2, 3] {
            let executor = Executor::multithread(threads);
            for round in 0..200usize {
                let total = run_in_pool(Some(&executor), || {
                    let sums = Mutex::new(0usize);
                    for_each_range(1000 + round, |r| {
                        let part: usize = r.sum();
                        *sums.lock().unwrap() += part;
                        Ok(())
                    })
                    .unwrap();
                    let seen = threads_of(&current_tract_executor());
                    (sums.into_inner().unwrap(), seen)
                });
                let n = 1000 + round;
                assert_eq!(
                    total,
                    (n * (n - 1) / 2, threads),
                    "{threads} threads, round {round}"
                );
            }
        }
    }

    /// A panic inside the run reaches the caller instead of leaving the spinners waiting.
    #[test]
    fn a_panic_inside_a_run_in_pool_returns() {
        let executor = Executor::multithread(2);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_in_pool(Some(&executor), || -> usize { panic!("inside the run") })
        }));
        assert!(caught.is_err());
        // The pool still serves runs afterwards.
        assert_eq!(run_in_pool(Some(&executor), || 7), 7);
    }
}
