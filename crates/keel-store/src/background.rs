//! Threads whose work is never urgent: the trace writer and the I/O thread of its
//! PostgreSQL connection. On a small machine they share the cores with request
//! handling, so they give the CPU to it first.

/// Lower the calling thread's priority (nice +10 for this thread only; on Linux the nice
/// value is per thread). Measured: it keeps a batch write from landing in the gateway's
/// tail latency on a small machine.
pub(crate) fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; who = 0 is the
        // calling thread on Linux. Failure (e.g. a seccomp policy) only loses the
        // optimisation, so the result is ignored.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value in a thread's `stat` file (field 19), if it can be read.
    fn nice_in(stat_file: &std::path::Path) -> Option<i64> {
        let stat = std::fs::read_to_string(stat_file).ok()?;
        let (_, after_name) = stat.rsplit_once(')')?;
        after_name.split_whitespace().nth(16)?.parse().ok()
    }

    /// The nice value of the calling thread.
    fn thread_nice() -> i64 {
        nice_in(std::path::Path::new("/proc/thread-self/stat")).unwrap_or(i64::MIN)
    }

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = thread_nice();
        let lowered = std::thread::spawn(|| {
            super::lower_thread_priority();
            thread_nice()
        })
        .join()
        .unwrap_or(i64::MIN);
        assert_eq!(lowered, before + 10);
        assert_eq!(thread_nice(), before);
    }

    /// The nice values of this process's threads named `name` (as the kernel keeps it:
    /// at most 15 bytes).
    fn nice_of_threads_named(name: &str) -> Vec<i64> {
        std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
            .filter_map(|task| nice_in(&task.path().join("stat")))
            .collect()
    }

    #[test]
    fn the_trace_writers_postgresql_io_thread_runs_at_its_lower_priority() {
        // No server needed: a pool opens connections only when asked for one.
        let pg = crate::sql::Postgres::new("postgres://keel@127.0.0.1:1/none").unwrap();
        let twin = pg.background_twin().unwrap();
        let base = thread_nice();
        // The thread names itself and lowers itself once it runs: wait for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut io = nice_of_threads_named("keel-postgres-b");
        while (io.is_empty() || io.iter().any(|&n| n != base + 10))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            io = nice_of_threads_named("keel-postgres-b");
        }
        assert!(!io.is_empty(), "the twin's I/O thread is running");
        assert!(io.iter().all(|&n| n == base + 10), "{io:?} against {base}");
        assert!(nice_of_threads_named("keel-postgres")
            .iter()
            .all(|&n| n == base));
        drop((twin, pg));
    }
}
