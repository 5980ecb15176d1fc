//! CPU priority of the server's background threads.
//!
//! Guests and checkpoints must never delay the control plane (the API,
//! completions, the flusher, upkeep). On Linux their threads run under
//! `SCHED_IDLE`: the kernel gives them a core only when no normal thread wants
//! it, and a waking control-plane thread preempts them at once rather than
//! waiting out their slice (what a nice value alone cannot promise: at nice 10
//! a waking API thread still waited for a guest's slice, and enqueue p99
//! beside two spinning guests was 6–10× idle). Where `SCHED_IDLE` is refused
//! the thread falls back to nice 19, the lowest share a normal thread can have.

/// Puts the calling thread in the background class: `SCHED_IDLE`, or nice 19
/// where that is refused. Failure is logged at debug level and otherwise
/// ignored: priority is an optimisation, never a condition of correctness.
pub fn background_thread(what: &'static str) {
    if let Err(idle) = sched_idle() {
        let tid = rustix::thread::gettid();
        if let Err(nice) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
            tracing::debug!(thread = what, %idle, %nice, "cannot lower a thread's priority");
        }
    }
}

/// Nice value of a background thread where `SCHED_IDLE` is not available.
pub const BACKGROUND_NICE: i32 = 19;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn sched_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid, initialised
    // struct that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sched_idle() -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The scheduling policy of a thread of this process (field 41 of its
    /// `stat`): 0 normal, 5 `SCHED_IDLE`.
    pub(crate) fn policy_of(tid: i32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The command name may hold spaces; fields are counted after its ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    #[test]
    fn a_background_thread_runs_under_sched_idle_and_others_do_not() {
        let me = rustix::thread::gettid().as_raw_nonzero().get();
        let (policy, normal) = std::thread::spawn(move || {
            super::background_thread("test");
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            (policy_of(tid), policy_of(me))
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE as u32);
        assert_eq!(
            normal,
            libc::SCHED_OTHER as u32,
            "only the calling thread changes"
        );
    }
}
