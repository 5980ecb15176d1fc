//! A network namespace joined to the host by a veth pair, for cutting one
//! runner off the network: the runner runs inside (`ip netns exec`),
//! reaching the database and answering the harness through the pair's
//! addresses; taking the host end down cuts both, and bringing it up heals
//! the link (TCP connections survive: their segments are retransmitted).
//! Needs root (`ip netns add`); removed on drop.

use std::process::Command;

/// The namespace and its link.
pub(super) struct Netns {
    name: String,
    host_if: String,
    /// The host end's address: what the runner inside connects to.
    pub(super) host_addr: String,
    /// The inside end's address: where the runner inside listens.
    pub(super) ns_addr: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates namespace `slf<tag>` with a veth pair on 10.231.x.0/30 (`x`
    /// from `tag`, so runs side by side do not collide).
    pub(super) fn create(tag: u32) -> Result<Netns, String> {
        let tag = tag % 100_000;
        let (a, b) = ((tag / 250) % 250, tag % 250);
        let ns = Netns {
            name: format!("slf{tag}"),
            host_if: format!("slf{tag}h"),
            host_addr: format!("10.{}.{a}.{}", 200 + b % 50, 1 + 4 * (b / 50)),
            ns_addr: format!("10.{}.{a}.{}", 200 + b % 50, 2 + 4 * (b / 50)),
        };
        let ns_if = format!("slf{tag}n");
        // A namespace left by a run that died is replaced.
        let _ = ip(&["netns", "del", &ns.name]);
        let _ = ip(&["link", "del", &ns.host_if]);
        ip(&["netns", "add", &ns.name])?;
        let setup = || -> Result<(), String> {
            ip(&[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ])?;
            ip(&["link", "set", &ns_if, "netns", &ns.name])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", ns.host_addr),
                "dev",
                &ns.host_if,
            ])?;
            ip(&["link", "set", &ns.host_if, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns.name, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &ns_if])?;
            inside(&["link", "set", &ns_if, "up"])?;
            inside(&["link", "set", "lo", "up"])
        };
        // On failure `ns` is dropped: the namespace (and the pair) go.
        setup()?;
        Ok(ns)
    }

    /// The command prefix that runs a program inside.
    pub(super) fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.name]
    }

    /// Cuts the link.
    pub(super) fn cut(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Heals the link.
    pub(super) fn heal(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so both.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
