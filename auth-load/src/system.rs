//! What the rest of the machine was doing: the load average, and how many cores processes other
//! than this one and the server kept busy during a measured window (from `/proc/stat` and the two
//! processes' `/proc/<pid>/stat`). On a shared machine that second figure says how much of the
//! CPU the run did not have.

/// The 1-minute load average (`NaN` when `/proc/loadavg` cannot be read).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU counters at the start of a window.
pub struct CpuWindow {
    server_pid: Option<u32>,
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuWindow {
    /// Reads the counters now; `None` when `/proc` is not readable.
    pub fn open(server_pid: Option<u32>) -> Option<Self> {
        let (busy, total) = machine_ticks()?;
        Some(Self { server_pid, busy, total, ours: ours(server_pid) })
    }

    /// Cores kept busy by other processes since [`CpuWindow::open`] (0 to the number of cores).
    pub fn others_busy_cores(&self) -> f64 {
        let Some((busy, total)) = machine_ticks() else { return f64::NAN };
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let total = total.saturating_sub(self.total);
        if total == 0 {
            return f64::NAN;
        }
        let others = (busy.saturating_sub(self.busy)).saturating_sub(ours(self.server_pid).saturating_sub(self.ours));
        others as f64 / total as f64 * cores
    }
}

/// Busy and total ticks of all CPUs together (first line of `/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + idle))
}

/// User and system ticks of this process and the server.
fn ours(server_pid: Option<u32>) -> u64 {
    let own = process_ticks("self");
    let server = server_pid.map_or(0, |pid| process_ticks(&pid.to_string()));
    own + server
}

fn process_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // fixed: utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    tick(11) + tick(12)
}
