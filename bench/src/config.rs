//! The command line: `wazoo-bench HOST:PORT[,HOST:PORT...] [key=value ...]`.

use anyhow::{bail, Context};

/// The usage text.
pub const USAGE: &str = "\
usage: wazoo-bench HOST:PORT[,HOST:PORT...] [key=value ...]

keys:
  n=20000          operations per workload, unless overridden below
  seq_get=N        sequential get_data of ROOT/data            (0 skips it)
  pipelined_get=N  get_data with `window` requests outstanding
  create_delete=N  create ROOT/cd-<i> then delete it; two ops (ops = 2N)
  pipelined_set=N  set_data of ROOT/data with `window` outstanding
  watch_latency=N  client B sets ROOT/w, client A's data watch fires
  multi=N          one multi of 10 creates ROOT/m-<i>-<j>
  window=1000      outstanding requests of the pipelined workloads
  warmup=1000      unmeasured operations before each workload
  root=/bench      scratch node, recreated at start and removed at the end
  tls_ca=FILE      connect over TLS, trusting the CA certificates in FILE (PEM)
  tls_cert=FILE    with tls_ca: present this client certificate (PEM) ...
  tls_key=FILE     ... and its private key (PEM): mutual TLS
  tls_verify_hostname=false  with tls_ca: accept the server's certificate for any name
  server_pid=PID   also measure that process's CPU (the server's; /proc/PID/stat, 10 ms
                   ticks), reported as server_cpu_s and server_cpu_us_per_op
  label=TEXT       copied into every JSON line as \"label\"

Prints one JSON object per workload on stdout and a table on stderr.";

/// The workloads, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One `get_data` at a time.
    SeqGet,
    /// `get_data` with `window` outstanding.
    PipelinedGet,
    /// Sequential create + delete pairs (two ops each).
    CreateDelete,
    /// `set_data` with `window` outstanding.
    PipelinedSet,
    /// Set by one client, watch fired in another.
    WatchLatency,
    /// A multi of 10 creates.
    Multi,
}

impl Workload {
    /// Every workload, in running order.
    pub const ALL: [Workload; 6] = [
        Workload::SeqGet,
        Workload::PipelinedGet,
        Workload::CreateDelete,
        Workload::PipelinedSet,
        Workload::WatchLatency,
        Workload::Multi,
    ];

    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqGet => "seq_get",
            Workload::PipelinedGet => "pipelined_get",
            Workload::CreateDelete => "create_delete",
            Workload::PipelinedSet => "pipelined_set",
            Workload::WatchLatency => "watch_latency",
            Workload::Multi => "multi",
        }
    }

    /// How many operations a run of `count` is: two per create_delete (the create and the
    /// delete), one for the others.
    pub fn ops(self, count: usize) -> usize {
        match self {
            Workload::CreateDelete => 2 * count,
            _ => count,
        }
    }

    /// The workload with this name.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The connect string.
    pub hosts: String,
    /// The default count (`n`).
    pub n: usize,
    /// Per-workload counts that override `n`.
    pub overrides: Vec<(Workload, usize)>,
    /// Outstanding requests of the pipelined workloads.
    pub window: usize,
    /// Unmeasured operations before each workload.
    pub warmup: usize,
    /// The scratch node.
    pub root: String,
    /// TLS: the CA bundle (`tls_ca`); `None`: plain TCP.
    pub tls_ca: Option<String>,
    /// TLS client certificate and key (`tls_cert`, `tls_key`).
    pub tls_client: Option<(String, String)>,
    /// `tls_verify_hostname` (default true).
    pub tls_verify_hostname: bool,
    /// `server_pid`: the process whose CPU is measured beside the client's.
    pub server_pid: Option<u32>,
    /// `label`: copied into every JSON line.
    pub label: Option<String>,
}

impl Config {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<Config> {
        let mut args = args.into_iter();
        let Some(hosts) = args.next() else {
            bail!("missing HOST:PORT");
        };
        if hosts.contains('=') || hosts.starts_with('-') {
            bail!("the first argument must be HOST:PORT[,HOST:PORT...], not {hosts:?}");
        }
        let mut cfg = Config {
            hosts,
            n: 20_000,
            overrides: Vec::new(),
            window: 1_000,
            warmup: 1_000,
            root: "/bench".to_string(),
            tls_ca: None,
            tls_client: None,
            tls_verify_hostname: true,
            server_pid: None,
            label: None,
        };
        let mut tls_cert = None;
        let mut tls_key = None;
        for arg in args {
            let Some((key, value)) = arg.split_once('=') else {
                bail!("expected key=value, got {arg:?}");
            };
            let count = || -> anyhow::Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{key}={value}: not a count"))
            };
            match key {
                "n" => cfg.n = count()?,
                "window" => cfg.window = count()?,
                "warmup" => cfg.warmup = count()?,
                "root" => cfg.root = value.to_string(),
                "tls_ca" => cfg.tls_ca = Some(value.to_string()),
                "tls_cert" => tls_cert = Some(value.to_string()),
                "tls_key" => tls_key = Some(value.to_string()),
                "server_pid" => {
                    cfg.server_pid = Some(
                        value
                            .parse()
                            .with_context(|| format!("{key}={value}: not a process id"))?,
                    )
                }
                "label" => cfg.label = Some(value.to_string()),
                "tls_verify_hostname" => {
                    cfg.tls_verify_hostname = value
                        .parse()
                        .with_context(|| format!("{key}={value}: true or false"))?
                }
                _ => match Workload::from_name(key) {
                    Some(w) => {
                        let c = count()?;
                        cfg.overrides.retain(|(o, _)| *o != w);
                        cfg.overrides.push((w, c));
                    }
                    None => bail!("unknown key {key:?}"),
                },
            }
        }
        if cfg.window == 0 {
            bail!("window must be at least 1");
        }
        cfg.tls_client = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together"),
        };
        if cfg.tls_ca.is_none() && (cfg.tls_client.is_some() || !cfg.tls_verify_hostname) {
            bail!("tls_cert, tls_key and tls_verify_hostname need tls_ca");
        }
        wazoo::validate_path(&cfg.root, false).context("root")?;
        if cfg.root == "/" {
            bail!("root must not be /");
        }
        Ok(cfg)
    }

    /// The TLS settings, when `tls_ca` was given.
    pub fn tls(&self) -> Option<wazoo::TlsConfig> {
        let ca = self.tls_ca.as_ref()?;
        let mut t = wazoo::TlsConfig::new()
            .ca_file(ca)
            .verify_hostname(self.tls_verify_hostname);
        if let Some((cert, key)) = &self.tls_client {
            t = t.client_cert_files(cert, key);
        }
        Some(t)
    }

    /// How many operations workload `w` runs (0: skipped).
    pub fn count(&self, w: Workload) -> usize {
        self.overrides
            .iter()
            .find(|(o, _)| *o == w)
            .map_or(self.n, |(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        Config::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let c = parse(&["127.0.0.1:2181"]).unwrap();
        assert_eq!(c.hosts, "127.0.0.1:2181");
        assert_eq!((c.n, c.window, c.warmup), (20_000, 1_000, 1_000));
        assert_eq!(c.root, "/bench");
        for w in Workload::ALL {
            assert_eq!(c.count(w), 20_000);
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
    }

    #[test]
    fn overrides() {
        let c = parse(&[
            "a:1,b:2",
            "n=5",
            "multi=0",
            "seq_get=7",
            "window=10",
            "warmup=0",
            "root=/x/y",
        ])
        .unwrap();
        assert_eq!(c.hosts, "a:1,b:2");
        assert_eq!(c.count(Workload::Multi), 0);
        assert_eq!(c.count(Workload::SeqGet), 7);
        assert_eq!(c.count(Workload::PipelinedGet), 5);
        assert_eq!((c.window, c.warmup), (10, 0));
        assert_eq!(c.root, "/x/y");
    }

    #[test]
    fn refusals() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["n=5"]).is_err());
        assert!(parse(&["h:1", "bogus=1"]).is_err());
        assert!(parse(&["h:1", "n=x"]).is_err());
        assert!(parse(&["h:1", "window=0"]).is_err());
        assert!(parse(&["h:1", "root=/"]).is_err());
        assert!(parse(&["h:1", "root=rel"]).is_err());
        assert!(parse(&["h:1", "seq_get"]).is_err());
        assert!(parse(&["h:1", "tls_cert=c"]).is_err());
        assert!(parse(&["h:1", "tls_ca=a", "tls_key=k"]).is_err());
        assert!(parse(&["h:1", "tls_verify_hostname=false"]).is_err());
        assert!(parse(&["h:1", "tls_ca=a", "tls_verify_hostname=maybe"]).is_err());
        assert!(parse(&["h:1", "server_pid=java"]).is_err());
        assert!(parse(&["h:1", "server_pid=-1"]).is_err());
    }

    #[test]
    fn create_delete_is_two_ops_per_count() {
        for w in Workload::ALL {
            let per = if w == Workload::CreateDelete { 2 } else { 1 };
            assert_eq!(w.ops(7), 7 * per, "{}", w.name());
        }
    }

    #[test]
    fn side_by_side_keys() {
        let c = parse(&["h:1"]).unwrap();
        assert_eq!((c.server_pid, c.label), (None, None));
        let c = parse(&["h:1", "server_pid=4242", "label=wazoo default, run 2=b"]).unwrap();
        assert_eq!(c.server_pid, Some(4242));
        assert_eq!(c.label.as_deref(), Some("wazoo default, run 2=b"));
        assert_eq!(
            parse(&["h:1", "label="]).unwrap().label.as_deref(),
            Some("")
        );
    }

    #[test]
    fn tls_keys() {
        let c = parse(&["h:1"]).unwrap();
        assert!(c.tls().is_none());
        let c = parse(&[
            "h:1",
            "tls_ca=/ca.pem",
            "tls_cert=/c.pem",
            "tls_key=/k.pem",
            "tls_verify_hostname=false",
        ])
        .unwrap();
        assert_eq!(c.tls_ca.as_deref(), Some("/ca.pem"));
        assert_eq!(
            c.tls_client,
            Some(("/c.pem".to_string(), "/k.pem".to_string()))
        );
        assert!(!c.tls_verify_hostname);
        assert!(c.tls().is_some());
    }
}
