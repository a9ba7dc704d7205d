//! `pedvision fleet`: edit and inspect a fleet from any machine that reaches its
//! NATS servers: cameras in the bucket, the workers' heartbeats, who runs what.

use std::time::Duration;

use clap::{Args, Subcommand};
use pedvision::config::defaults;
use pedvision::config::rules::{LineConfig, ZoneConfig};
use pedvision::fleet::{self, admin, camera::CameraSpec, now_ms, store::Stores};

#[derive(Debug, Args)]
pub struct FleetCliArgs {
    /// NATS servers, comma-separated.
    #[arg(long, value_name = "URLS", env = "PEDVISION_NATS", global = true)]
    pub nats: Option<String>,

    /// A NATS credentials file (`.creds`).
    #[arg(long, value_name = "FILE", global = true)]
    pub nats_creds: Option<std::path::PathBuf>,

    /// Replicas of the buckets and stream if this command creates them.
    #[arg(long, value_name = "N", default_value_t = defaults::FLEET_REPLICAS, global = true)]
    pub replicas: usize,

    /// Lease TTL in s if this command creates the lease bucket.
    #[arg(long, value_name = "S", default_value_t = defaults::FLEET_LEASE_TTL_S, global = true)]
    pub lease_ttl: f64,

    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Add, remove or list the fleet's cameras.
    #[command(subcommand)]
    Cameras(CamerasCommand),
    /// The live workers: id, host, model, cameras, fps, last heartbeat.
    Workers {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every camera: its owner, state, fps and lag.
    Status {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CamerasCommand {
    /// Add a camera (a free worker starts it within a moment).
    Add {
        /// Camera id: 1 to 64 letters, digits, '-' or '_'.
        id: String,
        /// Its input: rtsp://…, http(s)://…, test:PATTERN, or a file the workers see.
        input: String,
        /// Annotated MP4 on the worker that runs it (default: none).
        #[arg(long, value_name = "FILE.mp4")]
        output: Option<String>,
        /// A counting line: NAME:X1,Y1,X2,Y2[:A,B] (repeat for several).
        #[arg(long, value_name = "NAME:X1,Y1,X2,Y2[:A,B]")]
        line: Vec<String>,
        /// A zone: NAME:X1,Y1,X2,Y2,X3,Y3[,...] (repeat for several).
        #[arg(long, value_name = "NAME:X1,Y1,...")]
        zone: Vec<String>,
        /// Only workers running this model (manifest name) take it.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Replace the camera if it exists (its worker restarts it).
        #[arg(long)]
        replace: bool,
    },
    /// Remove a camera (its worker stops it).
    Rm { id: String },
    /// List the cameras (inputs with credentials hidden).
    Ls {
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(args: FleetCliArgs) -> anyhow::Result<()> {
    let spec = args.nats.clone().ok_or_else(|| {
        anyhow::anyhow!("which fleet? give --nats nats://HOST:4222 (or set PEDVISION_NATS)")
    })?;
    let servers = fleet::parse_servers(&spec).map_err(|e| anyhow::anyhow!("--nats: {e}"))?;
    if !(3.0..=3600.0).contains(&args.lease_ttl) {
        anyhow::bail!("--lease-ttl must be from 3 to 3600 s");
    }
    if !(1..=5).contains(&args.replicas) {
        anyhow::bail!("--replicas must be from 1 to 5");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client =
            fleet::connect(&servers, args.nats_creds.as_deref(), "pedvision-fleet").await?;
        let ttl = Duration::from_secs_f64(args.lease_ttl);
        let stores = fleet::store::open(client, ttl, args.replicas).await?;
        match args.command {
            FleetCommand::Cameras(c) => cameras(&stores, c).await,
            FleetCommand::Workers { json } => workers(&stores, json).await,
            FleetCommand::Status { json } => status(&stores, json).await,
        }
    })
}

async fn cameras(stores: &Stores, command: CamerasCommand) -> anyhow::Result<()> {
    match command {
        CamerasCommand::Add {
            id,
            input,
            output,
            line,
            zone,
            model,
            replace,
        } => {
            let spec = CameraSpec {
                input,
                output,
                lines: line
                    .iter()
                    .map(|l| LineConfig::parse_shorthand(l))
                    .collect::<Result<_, _>>()?,
                zones: zone
                    .iter()
                    .map(|z| ZoneConfig::parse_shorthand(z))
                    .collect::<Result<_, _>>()?,
                model,
            };
            admin::add_camera(stores, &id, &spec, replace).await?;
            out!("camera {id} added ({})", spec.shown_input());
        }
        CamerasCommand::Rm { id } => {
            admin::remove_camera(stores, &id).await?;
            out!("camera {id} removed");
        }
        CamerasCommand::Ls { json } => {
            for (id, spec) in admin::cameras(stores).await? {
                let shown = spec
                    .as_ref()
                    .map_or_else(|e| format!("(not a camera: {e})"), CameraSpec::shown_input);
                if json {
                    out!("{}", serde_json::json!({"camera": id, "input": shown}));
                } else {
                    out!("{id:<24} {shown}");
                }
            }
        }
    }
    Ok(())
}

async fn workers(stores: &Stores, json: bool) -> anyhow::Result<()> {
    let beats = admin::workers(stores).await?;
    if !json {
        out!(
            "{:<20} {:<20} {:<16} {:>7} {:>7} {:>9}",
            "WORKER",
            "HOST",
            "MODEL",
            "CAMERAS",
            "FPS",
            "SEEN"
        );
    }
    for b in beats {
        let ago = now_ms().saturating_sub(b.seen_ms) as f64 / 1e3;
        if json {
            out!("{}", serde_json::to_string(&b)?);
        } else {
            out!(
                "{:<20} {:<20} {:<16} {:>3}/{:<3} {:>7.1} {:>7.1}s ago",
                b.worker,
                b.host,
                b.model,
                b.cameras.len(),
                b.capacity,
                b.fps(),
                ago
            );
        }
    }
    Ok(())
}

async fn status(stores: &Stores, json: bool) -> anyhow::Result<()> {
    let all = admin::status(stores).await?;
    if !json {
        out!(
            "{:<20} {:<20} {:<13} {:>6} {:>9}  INPUT",
            "CAMERA",
            "OWNER",
            "STATE",
            "FPS",
            "LAG"
        );
    }
    for s in all {
        if json {
            out!("{}", serde_json::to_string(&s)?);
        } else {
            out!(
                "{:<20} {:<20} {:<13} {:>6.1} {:>9}  {}{}",
                s.camera,
                s.owner.as_deref().unwrap_or("-"),
                s.state,
                s.fps,
                s.lag_ms.map_or("-".into(), |l| format!("{l:.0} ms")),
                s.input,
                s.error.map_or(String::new(), |e| format!("  ({e})"))
            );
        }
    }
    Ok(())
}
