//! Waiting for the XDP program's readers: RCU, done by hand.
//!
//! lbd never rewrites memory the program may be reading. A changed real goes into the copy
//! the program does not use, and a changed schedule into the ring half it does not use; then
//! one store switches the program over (the real's generation, the service entry). The copy
//! switched away from may still be read by program runs that started before the switch, so
//! before it is rewritten, lbd waits until all of them have finished: an RCU grace period.
//! XDP programs run in RCU read-side critical sections (softirq, or `rcu_read_lock` in
//! generic mode and test runs), and `membarrier(MEMBARRIER_CMD_GLOBAL)` is
//! `synchronize_rcu()` as a system call.
//!
//! Hash maps (services, interfaces) need the same care for another reason: updating or
//! deleting an entry hands its memory back to the map at once (a preallocated map keeps the
//! old element as the next update's spare), and the very next update, of any key, may write
//! into it while a program run still reads it. So lbd writes hash entries only when they
//! change, and after one was replaced or deleted, waits a grace period before the next write
//! to a hash map.
//!
//! A grace period takes milliseconds, so it is taken only when needed: when a copy that was
//! switched away from since the last one is about to be rewritten. A batch of changes to
//! different reals and services therefore waits at most once.
//!
//! With one CPU online, `membarrier` returns at once: no XDP run can be in progress while this
//! thread runs, as XDP runs in softirq context (this does not hold on PREEMPT_RT kernels,
//! where softirqs can be preempted; lbd is not meant for those).

use std::{collections::HashSet, time::Duration};

const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
/// Where `membarrier` is refused (`nohz_full` kernels), a pause this long stands in: far
/// longer than any run of the program, though not a guarantee the kernel gives.
const FALLBACK_PAUSE: Duration = Duration::from_millis(50);

/// What was switched away from since the last grace period.
#[derive(Debug, Default)]
pub struct Readers {
    reals: HashSet<u32>,
    rings: HashSet<u32>,
    /// A hash-map element was replaced or deleted.
    hash_element: bool,
    warned: bool,
    /// Grace periods waited so far.
    waited: u64,
}

impl Readers {
    /// Call after switching the program to a real's other copy.
    pub fn switched_real(&mut self, id: u32) {
        self.reals.insert(id);
    }

    /// Call after switching a service to its other ring half.
    pub fn switched_ring(&mut self, service_id: u32) {
        self.rings.insert(service_id);
    }

    /// Call before rewriting a real's unused copy: waits if it was in use too recently.
    pub fn before_rewriting_real(&mut self, id: u32) {
        if self.reals.contains(&id) {
            self.wait();
        }
    }

    /// Call after replacing or deleting a hash-map entry: its memory is the map's again.
    pub fn retired_hash_element(&mut self) {
        self.hash_element = true;
    }

    /// Call before writing any hash-map entry: waits if an element was recycled too recently.
    pub fn before_hash_write(&mut self) {
        if self.hash_element {
            self.wait();
        }
    }

    /// Call before rewriting a service's unused ring half.
    pub fn before_rewriting_ring(&mut self, service_id: u32) {
        if self.rings.contains(&service_id) {
            self.wait();
        }
    }

    fn wait(&mut self) {
        // SAFETY: membarrier takes no pointers.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
        if rc != 0 {
            if !self.warned {
                log::warn!(
                    "membarrier(MEMBARRIER_CMD_GLOBAL) failed ({}); pausing {FALLBACK_PAUSE:?} \
                     before reusing map entries instead",
                    std::io::Error::last_os_error()
                );
                self.warned = true;
            }
            std::thread::sleep(FALLBACK_PAUSE);
        }
        self.reals.clear();
        self.rings.clear();
        self.hash_element = false;
        self.waited += 1;
    }

    /// Grace periods waited so far: memory given up before one of them is no longer read.
    pub fn grace_periods(&self) -> u64 {
        self.waited
    }

    /// Waits for a grace period now.
    pub fn wait_now(&mut self) {
        self.wait();
    }
}
