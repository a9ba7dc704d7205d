//! `pedvision worker`: a long-running member of a fleet. It is `run` with no
//! inputs and a `[fleet]` layer: its cameras come from the `pedvision_cameras`
//! bucket through leases (see `pedvision::fleet`), its metadata goes to JetStream.

use clap::{ArgMatches, Args};
use pedvision::config::pipeline::FleetSection;

use super::run::{RunArgs, given};

/// `pedvision worker` options: the fleet's, then every `run` option (model,
/// tracking, outputs, `--api`, `--metrics`…).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// How a worker joins its fleet.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// NATS servers, comma-separated (`nats://HOST:4222[,nats://HOST2:4222]`); any
    /// one reachable is enough, the client learns the cluster's others.
    #[arg(long, value_name = "URLS", env = "PEDVISION_NATS")]
    pub nats: Option<String>,

    /// A NATS credentials file (`.creds`: JWT and NKey seed).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<std::path::PathBuf>,

    /// This worker's id, unique in the fleet (letters, digits, '-', '_').
    /// Default: the host name.
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,

    /// Most cameras this worker runs at once. Default: --max-streams (64).
    #[arg(long, value_name = "N")]
    pub capacity: Option<usize>,

    /// Take cameras over from the most loaded workers, one at a time, until the
    /// loads are within one (for a worker added to a running fleet).
    #[arg(long)]
    pub rebalance: bool,

    /// Seconds a camera's lease lives without renewal: a dead worker's cameras
    /// move after about this long. Only used when the lease bucket is created.
    #[arg(long, value_name = "S")]
    pub lease_ttl: Option<f64>,

    /// Replicas of the buckets and the metadata stream when first created (3 on
    /// a 3-node cluster).
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,

    /// Disk spool between the pipeline and JetStream (`{worker}`: the worker id).
    /// Default: out/nats-spool-{worker}.
    #[arg(long, value_name = "DIR")]
    pub nats_spool: Option<std::path::PathBuf>,
}

impl FleetArgs {
    /// The flags as a `[fleet]` layer.
    pub fn layer(&self, m: &ArgMatches) -> FleetSection {
        FleetSection {
            nats: self.nats.clone(),
            creds: self.nats_creds.clone(),
            worker_id: self.worker_id.clone(),
            capacity: self.capacity,
            rebalance: given(m, "rebalance").then_some(true),
            lease_ttl_s: self.lease_ttl,
            replicas: self.replicas,
            spool_dir: self.nats_spool.clone(),
            ..Default::default()
        }
    }
}

pub fn execute(args: WorkerArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let mut layers = args.run.layers(matches)?;
    layers.base.inputs.clear();
    let flags = args.fleet.layer(matches);
    let from_file = layers.file.as_ref().and_then(|f| f.config.fleet.clone());
    if from_file.is_none() && flags.nats.is_none() {
        anyhow::bail!(
            "a worker needs its NATS servers: --nats nats://HOST:4222 (or [fleet] nats in --config)"
        );
    }
    layers.flags.fleet = Some(flags);
    super::run::execute_layers(&args.run, layers)
}
