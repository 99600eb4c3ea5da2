//! The workloads. Each runs `warmup` unmeasured operations, then `count` measured ones, and
//! returns its [`Report`].
//!
//! What is measured (wall time and CPU of the whole process, and of the server with
//! `server_pid=`, between [`Meter::start`] and [`Meter::stop`]) and what one operation is:
//! - `seq_get`: one `get_data(ROOT/data)` (100 bytes) at a time.
//! - `pipelined_get` / `pipelined_set`: `get_data` / `set_data` (100 bytes, any version) of
//!   `ROOT/data` with `window` requests outstanding, all polled inside the benchmark's one task
//!   on its current-thread runtime (see [`crate::window`]; nothing is spawned per operation);
//!   latency is each request's own start-to-completion time.
//! - `create_delete`: `create(ROOT/cd-<i>)` (empty, persistent) then `delete`: two ops, each
//!   with its own latency, so `ops = 2 * count` as the other clients' programs count it.
//!   Formatting the path is inside the measured CPU, outside the latency.
//! - `multi`: one `multi` of 10 creates `ROOT/m-<i>-<j>` (empty, persistent); building the op
//!   list is inside the measured CPU, outside the latency. Measured in chunks
//!   of [`MULTI_CHUNK`] multis; between chunks the nodes are removed by pipelined multis of 10
//!   deletes, which are **not** measured (neither time, CPU nor latency).
//! - `watch_latency`: client A leaves a data watch on `ROOT/w` (`get_data_watch`), then client
//!   B (a second session) sets `ROOT/w`; latency runs from just before B's `set_data` to A's
//!   watch firing. One op = one such round trip, sequentially; its time and CPU include A's
//!   `get_data_watch` and B's reply, and CPU counts both clients (the whole process).

use std::time::Instant;

use anyhow::{bail, Context};
use wazoo::{Client, CreateMode, EventType, Op};

use crate::config::Workload;
use crate::stats::{nanos_since, Meter, Report};
use wazoo_bench::cpu::CpuClock;

/// Size of the data of `ROOT/data` and `ROOT/w`, and of every `set_data`.
pub const PAYLOAD_LEN: usize = 100;
/// Creates per `multi`.
pub const MULTI_SIZE: usize = 10;
/// Multis measured before their nodes are cleaned up (keeps `ROOT`'s child list small).
pub const MULTI_CHUNK: usize = 1_000;

/// The session and the paths and payload the workloads use.
#[derive(Debug)]
struct Shared {
    zk: Client,
    root: String,
    data_path: String,
    w_path: String,
    payload: Vec<u8>,
}

/// One operation of a pipelined run.
#[derive(Debug, Clone, Copy)]
enum PipeOp {
    /// `get_data(ROOT/data)`.
    GetData,
    /// `set_data(ROOT/data, payload)`.
    SetData,
    /// A multi of deletes of the nodes of multi number `base + i`.
    DeleteMulti { base: usize },
}

impl Shared {
    async fn op(&self, op: PipeOp, i: usize) -> wazoo::Result<()> {
        match op {
            PipeOp::GetData => self.zk.get_data(&self.data_path).await.map(drop),
            PipeOp::SetData => self
                .zk
                .set_data(&self.data_path, &self.payload, None)
                .await
                .map(drop),
            PipeOp::DeleteMulti { base } => self
                .zk
                .multi(&multi_ops(&self.root, base + i, false))
                .await
                .map(drop),
        }
    }
}

/// The ops of multi number `i`: 10 creates or 10 deletes of `ROOT/m-<i>-<j>`.
fn multi_ops(root: &str, i: usize, create: bool) -> Vec<Op> {
    (0..MULTI_SIZE)
        .map(|j| {
            let path = format!("{root}/m-{i}-{j}");
            if create {
                Op::create(path, Vec::new(), CreateMode::Persistent)
            } else {
                Op::delete(path, -1)
            }
        })
        .collect()
}

/// Runs the workloads against one session (plus a second one for `watch_latency`).
#[derive(Debug)]
pub struct Bench {
    shared: Shared,
    hosts: String,
    window: usize,
    clock: CpuClock,
    /// The server's CPU clock (`server_pid=`).
    server: Option<CpuClock>,
}

impl Bench {
    /// A bench on `zk`, with scratch node `root` (see [`Bench::setup`]), measuring this
    /// process's CPU with `clock` and, if given, the server's with `server`.
    pub fn new(
        zk: Client,
        hosts: &str,
        root: &str,
        window: usize,
        clock: CpuClock,
        server: Option<CpuClock>,
    ) -> Bench {
        Bench {
            shared: Shared {
                zk,
                root: root.to_string(),
                data_path: format!("{root}/data"),
                w_path: format!("{root}/w"),
                payload: vec![b'x'; PAYLOAD_LEN],
            },
            hosts: hosts.to_string(),
            window,
            clock,
            server,
        }
    }

    /// A meter at zero for one run (measured or warm-up).
    fn meter(&self) -> Meter {
        Meter::new(self.clock, self.server)
    }

    /// Recreates `ROOT` (and its parents if missing) with `ROOT/data` and `ROOT/w`.
    pub async fn setup(&self) -> anyhow::Result<()> {
        let s = &self.shared;
        s.zk.delete_recursive(&s.root)
            .await
            .with_context(|| format!("removing {}", s.root))?;
        let opts = wazoo::CreateOptions {
            makepath: true,
            ..Default::default()
        };
        s.zk.create_with(&s.root, b"", &opts)
            .await
            .with_context(|| format!("creating {}", s.root))?;
        for p in [&s.data_path, &s.w_path] {
            s.zk.create(p, &s.payload, CreateMode::Persistent)
                .await
                .with_context(|| format!("creating {p}"))?;
        }
        Ok(())
    }

    /// Removes `ROOT` and everything below it.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        let s = &self.shared;
        s.zk.delete_recursive(&s.root)
            .await
            .with_context(|| format!("removing {}", s.root))
    }

    /// Runs one workload: `warmup` unmeasured operations, then `count` measured ones.
    pub async fn run(&self, w: Workload, count: usize, warmup: usize) -> anyhow::Result<Report> {
        let mut meter = self.meter();
        let lat = match w {
            Workload::SeqGet => {
                self.seq_get(warmup, &mut self.meter()).await?;
                self.seq_get(count, &mut meter).await?
            }
            Workload::PipelinedGet => {
                self.pipelined(PipeOp::GetData, warmup, &mut self.meter())
                    .await?;
                self.pipelined(PipeOp::GetData, count, &mut meter).await?
            }
            Workload::PipelinedSet => {
                self.pipelined(PipeOp::SetData, warmup, &mut self.meter())
                    .await?;
                self.pipelined(PipeOp::SetData, count, &mut meter).await?
            }
            Workload::CreateDelete => {
                self.create_delete(warmup, &mut self.meter()).await?;
                self.create_delete(count, &mut meter).await?
            }
            Workload::Multi => {
                self.multi(warmup, &mut self.meter()).await?;
                self.multi(count, &mut meter).await?
            }
            Workload::WatchLatency => {
                let b = crate::connect(&self.hosts)
                    .await
                    .context("connecting the second client")?;
                let res = async {
                    self.watch_latency(&b, warmup, &mut self.meter()).await?;
                    self.watch_latency(&b, count, &mut meter).await
                }
                .await;
                b.close().await;
                res?
            }
        };
        if lat.len() != w.ops(count) {
            bail!(
                "{} measured {} ops of {}",
                w.name(),
                lat.len(),
                w.ops(count)
            );
        }
        Ok(Report::new(w.name(), count, &meter, lat))
    }

    async fn seq_get(&self, count: usize, meter: &mut Meter) -> anyhow::Result<Vec<u64>> {
        let s = &self.shared;
        let mut lat = Vec::with_capacity(count);
        meter.start();
        for _ in 0..count {
            let t = Instant::now();
            s.zk.get_data(&s.data_path).await?;
            lat.push(nanos_since(t));
        }
        meter.stop();
        Ok(lat)
    }

    async fn pipelined(
        &self,
        op: PipeOp,
        count: usize,
        meter: &mut Meter,
    ) -> anyhow::Result<Vec<u64>> {
        meter.start();
        let lat = drive(&self.shared, op, count, self.window).await;
        meter.stop();
        lat
    }

    async fn create_delete(&self, count: usize, meter: &mut Meter) -> anyhow::Result<Vec<u64>> {
        let s = &self.shared;
        let mut lat = Vec::with_capacity(2 * count);
        meter.start();
        for i in 0..count {
            let path = format!("{}/cd-{i}", s.root);
            let t = Instant::now();
            s.zk.create(&path, b"", CreateMode::Persistent).await?;
            lat.push(nanos_since(t));
            let t = Instant::now();
            s.zk.delete(&path, None).await?;
            lat.push(nanos_since(t));
        }
        meter.stop();
        Ok(lat)
    }

    async fn multi(&self, count: usize, meter: &mut Meter) -> anyhow::Result<Vec<u64>> {
        let s = &self.shared;
        let mut lat = Vec::with_capacity(count);
        let mut done = 0;
        while done < count {
            let k = MULTI_CHUNK.min(count - done);
            meter.start();
            for i in done..done + k {
                let ops = multi_ops(&s.root, i, true);
                let t = Instant::now();
                s.zk.multi(&ops).await?;
                lat.push(nanos_since(t));
            }
            meter.stop();
            // Clean-up, not measured.
            drive(
                &self.shared,
                PipeOp::DeleteMulti { base: done },
                k,
                self.window,
            )
            .await?;
            done += k;
        }
        Ok(lat)
    }

    async fn watch_latency(
        &self,
        b: &Client,
        count: usize,
        meter: &mut Meter,
    ) -> anyhow::Result<Vec<u64>> {
        let s = &self.shared;
        let mut lat = Vec::with_capacity(count);
        meter.start();
        for _ in 0..count {
            let (_, _, watch) = s.zk.get_data_watch(&s.w_path).await?;
            let t = Instant::now();
            let (set, (ev, fired)) = tokio::join!(b.set_data(&s.w_path, &s.payload, None), async {
                let ev = watch.changed().await;
                (ev, nanos_since(t))
            });
            set?;
            if ev.event_type != EventType::NodeDataChanged {
                bail!("the watch fired with {ev:?}");
            }
            lat.push(fired);
        }
        meter.stop();
        Ok(lat)
    }
}

/// Runs `count` operations with `window` outstanding (see [`crate::window`]); returns every
/// operation's latency.
async fn drive(
    shared: &Shared,
    op: PipeOp,
    count: usize,
    window: usize,
) -> anyhow::Result<Vec<u64>> {
    Ok(crate::window::run(count, window, |i| shared.op(op, i)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a real server: a create_delete pair is two ops (the create and the delete), as
    /// the other clients' programs count it; every other workload one op per count.
    #[tokio::test(flavor = "current_thread")]
    async fn create_delete_counts_the_create_and_the_delete() {
        let server = wazoo_tests::ZkServer::start().expect("start ZooKeeper");
        let hosts = server.connect_string();
        let zk = Client::connect(&hosts).await.expect("connect");
        let clock = CpuClock::new().unwrap();
        let bench = Bench::new(zk.clone(), &hosts, "/bench-test", 4, clock, None);
        bench.setup().await.unwrap();
        let cd = bench.run(Workload::CreateDelete, 5, 1).await.unwrap();
        assert_eq!((cd.n, cd.ops), (5, 10));
        assert!(cd.cpu_us_per_op > 0.0 && cd.server_cpu_s.is_none());
        for w in [Workload::SeqGet, Workload::PipelinedSet, Workload::Multi] {
            let r = bench.run(w, 5, 1).await.unwrap();
            assert_eq!((r.n, r.ops), (5, 5), "{}", w.name());
        }
        assert_eq!(
            zk.get_children("/bench-test").await.unwrap().0.len(),
            2,
            "only ROOT/data and ROOT/w are left"
        );
        bench.teardown().await.unwrap();
        zk.close().await;
    }
}
