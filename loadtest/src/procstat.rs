//! CPU time and resident memory of a process, read from `/proc` (Linux).

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, which Linux fixes at 100 on every
/// architecture it exposes to user space.
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    /// User plus system CPU time, seconds.
    pub(crate) cpu_s: f64,
    /// Resident set size, KiB.
    pub(crate) rss_kib: u64,
}

/// Reads `pid` (or `self`); `None` when the process is gone or `/proc` is missing.
pub(crate) fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Sample {
        cpu_s: parse_cpu(&stat)?,
        rss_kib: parse_rss(&status)?,
    })
}

/// utime + stime from a `stat` line. The command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's soft limit on open files, from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Sums samples of several processes (several engine nodes).
pub(crate) fn sum(samples: &[Sample]) -> Sample {
    samples.iter().fold(Sample::default(), |a, s| Sample {
        cpu_s: a.cpu_s + s.cpu_s,
        rss_kib: a.rss_kib + s.rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_past_a_tricky_command_name() {
        let stat = "4242 (evd (x) y) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 50 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu(stat), Some(3.0));
    }

    #[test]
    fn reads_rss() {
        let status = "Name:\tevd\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(20480));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).expect("/proc/self");
        assert!(s.rss_kib > 0);
    }
}
