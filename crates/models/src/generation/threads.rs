//! candle's CPU thread count, worked out once per process.

/// Makes candle's CPU thread count a cheap lookup for the rest of the process.
///
/// Unless `RAYON_NUM_THREADS` is set, candle works out its thread count
/// afresh for every f32 matmul, by parsing /proc/cpuinfo (`num_cpus` does not
/// cache it): ~45 µs each, ~270 matmuls per SmolLM2 token, a fifth of the
/// decoding time. This sets `RAYON_NUM_THREADS` to the count candle would
/// choose anyway (the physical cores), which candle then reads instead.
///
/// # Safety
///
/// As for [`std::env::set_var`]: no other thread may touch the environment
/// meanwhile. Call it first thing in `main`, before any other thread starts.
pub unsafe fn pin_cpu_threads() {
    let pinned = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n > 0);
    if !pinned {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees that no other thread is running.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}
