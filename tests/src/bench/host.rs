//! The machine the bench runs on, as its parts need it: the CPUs this process may use and
//! pinning to them, and the kernel's CPU-time counters in /proc/stat.

/// The CPUs this thread may run on.
pub fn affinity() -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity (pid 0: this thread)
    // fills at most the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let result = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(
            result,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        set
    }
}

/// Lets this thread (and what it starts from now on) run on `set` only.
pub fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    let result = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(
        result,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The CPUs this thread may run on, by number: one generator thread is pinned to each.
pub fn allowed_cpus() -> Vec<usize> {
    let set = affinity();
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reading a bit of a set we own, within CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins this thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; `cpu` is below CPU_SETSIZE.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set);
}

/// The counters of /proc/stat's `cpu` line (all CPUs together, in clock ticks): user, nice,
/// system, idle, iowait, irq, softirq, steal, guest, guest_nice.
pub fn cpu_ticks() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let line = stat.lines().next().expect("/proc/stat's cpu line");
    line.split_whitespace()
        .skip(1)
        .map(|field| field.parse::<u64>().expect("a /proc/stat counter"))
        .collect()
}

/// Clock ticks per second of /proc's CPU times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}
