//! What the machine did during a measured window: the load average, and the cores kept busy by
//! this process (the load generator and the ceiling route), by the server, by PostgreSQL (every
//! process named `postgres`, ours or not) and by everything else, from `/proc/stat` and
//! `/proc/<pid>/stat`. On a shared machine the last figure says how much CPU the run did not
//! have, and CPU time per request says what a request costs whatever the machine was doing.

/// The 1-minute load average (`NaN` when `/proc/loadavg` cannot be read).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds).
pub fn thread_cpu() -> Option<std::time::Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(nanos))
}

/// CPU seconds spent during a window, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Length of the window, in seconds.
    pub seconds: f64,
    /// This process: the load generator (and the ceiling route, when it runs).
    pub load_generator: f64,
    /// The server process.
    pub server: f64,
    /// Processes named `postgres`.
    pub postgres: f64,
    /// Everything else.
    pub others: f64,
}

impl CpuUse {
    /// Cores kept busy by other processes on average.
    pub fn others_cores(&self) -> f64 {
        if self.seconds > 0.0 { self.others / self.seconds } else { f64::NAN }
    }
}

/// CPU counters at the start of a window.
pub struct CpuWindow {
    server_pid: Option<u32>,
    started: std::time::Instant,
    machine_busy: u64,
    own: u64,
    server: u64,
    postgres: std::collections::HashMap<u32, u64>,
}

impl CpuWindow {
    /// Reads the counters now; `None` when `/proc` is not readable.
    pub fn open(server_pid: Option<u32>) -> Option<Self> {
        Some(Self {
            server_pid,
            started: std::time::Instant::now(),
            machine_busy: machine_busy_ticks()?,
            own: process_ticks("self"),
            server: server_pid.map_or(0, |pid| process_ticks(&pid.to_string())),
            postgres: postgres_ticks(),
        })
    }

    /// What was spent since [`CpuWindow::open`].
    pub fn close(&self) -> CpuUse {
        let hz = 100.0; // USER_HZ, the unit of /proc's tick counters on Linux.
        let busy = machine_busy_ticks().unwrap_or(self.machine_busy).saturating_sub(self.machine_busy);
        let own = process_ticks("self").saturating_sub(self.own);
        let server = self.server_pid.map_or(0, |pid| process_ticks(&pid.to_string())).saturating_sub(self.server);
        let postgres: u64 = postgres_ticks()
            .into_iter()
            .map(|(pid, ticks)| ticks.saturating_sub(self.postgres.get(&pid).copied().unwrap_or(0)))
            .sum();
        let others = busy.saturating_sub(own + server + postgres);
        CpuUse {
            seconds: self.started.elapsed().as_secs_f64(),
            load_generator: own as f64 / hz,
            server: server as f64 / hz,
            postgres: postgres as f64 / hz,
            others: others as f64 / hz,
        }
    }
}

/// Busy ticks of all CPUs together (first line of `/proc/stat`).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// User and system ticks of every process named `postgres`.
fn postgres_ticks() -> std::collections::HashMap<u32, u64> {
    let mut ticks = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return ticks };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && stat.contains("(postgres)")
        {
            ticks.insert(pid, ticks_of(&stat));
        }
    }
    ticks
}

fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |stat| ticks_of(&stat))
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces; the
/// fields after its closing parenthesis are fixed: utime and stime are fields 14 and 15, i.e.
/// 12th and 13th after the name.
fn ticks_of(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    tick(11) + tick(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_a_name_with_spaces() {
        let line = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 5 0 0";
        assert_eq!(ticks_of(line), 300);
    }
}
