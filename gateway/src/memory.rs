//! The allocator (jemalloc, declared in lib.rs): returning freed memory to
//! the system, and what it holds, as metrics.

/// Lets jemalloc return freed memory to the system from a thread of its
/// own, for the long-running commands (`run`, `connector`). Without it
/// jemalloc purges dirty pages only while the process allocates, so memory
/// freed after a burst (640 h2 streams in flight: ~80 MiB) stays resident
/// while the process idles or streams a transfer with few allocations
/// (measured: 82 MiB resident 12 s after an h2 burst, 56 MiB with the
/// thread; docs/benchmarks.md). Failure only costs that memory: logged.
pub fn purge_freed_memory_in_background() {
    #[cfg(not(target_env = "msvc"))]
    {
        if let Err(e) = tikv_jemalloc_ctl::max_background_threads::write(1)
            .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true))
        {
            tracing::warn!(error = %e, "jemalloc background purging could not be switched on");
        }
        return_freed_memory_after(DIRTY_DECAY_MS);
    }
}

/// How long freed pages stay resident before the background thread returns
/// them (jemalloc's `dirty_decay_ms`, 10 s by default). With 10 s, the
/// memory of an h2 burst was still resident 8 s later, when the next
/// transfer started (69 MiB RSS, 22 MiB of it live; docs/benchmarks.md).
/// Under steady load freed pages are reused long before a second passes,
/// so the shorter delay only shortens the tail after a burst.
const DIRTY_DECAY_MS: isize = 1000;

/// Sets `dirty_decay_ms` for the arenas made from now on and for those
/// already made; an arena index not yet in use is refused, which is fine.
#[cfg(not(target_env = "msvc"))]
fn return_freed_memory_after(ms: isize) {
    use tikv_jemalloc_ctl::{Access, AsName};
    if let Err(e) = "arenas.dirty_decay_ms\0".name().write(ms) {
        tracing::warn!(error = %e, "jemalloc dirty_decay_ms could not be set");
        return;
    }
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
    for i in 0..arenas {
        let _ = format!("arena.{i}.dirty_decay_ms\0")
            .as_str()
            .name()
            .write(ms);
    }
}

const ALLOCATED: (&str, &str) = (
    "mft_memory_allocated_bytes",
    "Bytes in the process's live heap allocations (jemalloc stats.allocated).",
);
const RESIDENT: (&str, &str) = (
    "mft_memory_resident_bytes",
    "Bytes of physical memory in the allocator's pages: the live heap, its metadata, and freed pages not yet returned (jemalloc stats.resident).",
);

/// Reads the allocator's statistics at scrape time: the gap between the
/// two gauges is memory freed but still resident, the gap between
/// `resident` and the process's RSS is code, stacks and kernel-side buffers.
pub(crate) struct MemoryCollector {
    descs: Vec<prometheus::core::Desc>,
}

impl MemoryCollector {
    pub(crate) fn new() -> prometheus::Result<MemoryCollector> {
        let desc = crate::metrics::scrape_desc;
        Ok(MemoryCollector {
            descs: vec![desc(ALLOCATED, &[])?, desc(RESIDENT, &[])?],
        })
    }
}

impl prometheus::core::Collector for MemoryCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut out = Vec::with_capacity(2);
        #[cfg(not(target_env = "msvc"))]
        {
            use tikv_jemalloc_ctl::{epoch, stats};
            // The statistics are a snapshot taken at the last epoch advance.
            if epoch::advance().is_err() {
                return out;
            }
            for ((name, help), value) in [
                (ALLOCATED, stats::allocated::read()),
                (RESIDENT, stats::resident::read()),
            ] {
                let (Ok(value), Ok(gauge)) = (
                    value,
                    prometheus::IntGauge::with_opts(prometheus::Opts::new(name, help)),
                ) else {
                    continue;
                };
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
                out.extend(prometheus::core::Collector::collect(&gauge));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauges_follow_a_large_allocation() {
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(MemoryCollector::new().unwrap()))
            .unwrap();
        let read = |name: &str| -> i64 {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.get_metric()[0].get_gauge().get_value() as i64)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let before = read(ALLOCATED.0);
        // Touched, so its pages are resident too.
        // Other tests allocate meanwhile: the margins are wide.
        let block = vec![1u8; 256 << 20];
        let during = read(ALLOCATED.0);
        assert!(during - before >= 200 << 20, "{before} -> {during}");
        assert!(read(RESIDENT.0) >= 200 << 20);
        drop(block);
        assert!(read(ALLOCATED.0) < during - (200 << 20));
    }
}
