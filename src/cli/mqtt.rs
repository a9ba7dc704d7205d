//! The MQTT options of `run`, and their layer of the settings model (`[mqtt]`).

use std::path::PathBuf;

use clap::ArgMatches;
use pedvision::config::defaults;
use pedvision::config::pipeline::MqttSection;

use super::run::given;

/// MQTT options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// Publish each frame's metadata to this broker: mqtt://HOST[:PORT] or
    /// mqtts://HOST[:PORT] (TLS). QoS 1, at least once, in order per stream; kept in
    /// a disk spool while the broker is away.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Topic prefix: frames go to PREFIX/STREAM, retained online/offline to
    /// PREFIX/status.
    #[arg(long, default_value = defaults::MQTT_TOPIC_PREFIX, value_name = "PREFIX")]
    pub mqtt_topic_prefix: String,

    /// MQTT client id. Default: pedvision-HOSTNAME.
    #[arg(long, value_name = "ID")]
    pub mqtt_client_id: Option<String>,

    /// MQTT user name.
    #[arg(long, value_name = "NAME")]
    pub mqtt_username: Option<String>,

    /// Environment variable holding the MQTT password (never on the command line).
    #[arg(long, value_name = "VAR")]
    pub mqtt_password_env: Option<String>,

    /// CA certificate (PEM) for mqtts://. Default: the system's trusted roots.
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mqtts:// brokers that ask for one.
    #[arg(long, value_name = "FILE", requires = "mqtt_tls_key")]
    pub mqtt_tls_cert: Option<PathBuf>,

    /// Client private key (PEM), with --mqtt-tls-cert.
    #[arg(long, value_name = "FILE", requires = "mqtt_tls_cert")]
    pub mqtt_tls_key: Option<PathBuf>,

    /// Disk spool: messages wait here until the broker acknowledges them, across
    /// broker outages and restarts of pedvision.
    #[arg(long, default_value = defaults::MQTT_SPOOL, value_name = "DIR")]
    pub mqtt_spool: PathBuf,

    /// Spool bound in MiB; past it the oldest messages are dropped (and counted).
    #[arg(long, default_value_t = defaults::MQTT_SPOOL_MAX_MB, value_name = "MIB")]
    pub mqtt_spool_max_mb: u64,

    /// At the end of a run, how long to keep delivering the spool, in s; what is
    /// left is sent by the next run.
    #[arg(long, default_value_t = defaults::MQTT_DRAIN_TIMEOUT_S, value_name = "S")]
    pub mqtt_drain_timeout: f64,
}

/// Sets `$key` of the section when flag `$id` was given, recording the flag's name.
macro_rules! mqtt_flag {
    ($m:expr, $q:expr, $names:expr; $key:ident <- $id:literal $flag:literal = $value:expr) => {
        if given($m, $id) {
            $q.$key = Some($value);
            $names.push((
                concat!("mqtt.", stringify!($key)).to_string(),
                $flag.to_string(),
            ));
        }
    };
}

impl MqttArgs {
    /// The `[mqtt]` flags given, as a section of the settings model.
    pub fn layer(&self, m: &ArgMatches, names: &mut Vec<(String, String)>) -> MqttSection {
        let mut q = MqttSection::default();
        mqtt_flag!(m, q, names; url <- "mqtt" "--mqtt" = self.mqtt.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; topic_prefix <- "mqtt_topic_prefix" "--mqtt-topic-prefix" = self.mqtt_topic_prefix.clone());
        mqtt_flag!(m, q, names; client_id <- "mqtt_client_id" "--mqtt-client-id" = self.mqtt_client_id.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; username <- "mqtt_username" "--mqtt-username" = self.mqtt_username.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; password_env <- "mqtt_password_env" "--mqtt-password-env" = self.mqtt_password_env.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; tls_ca <- "mqtt_tls_ca" "--mqtt-tls-ca" = self.mqtt_tls_ca.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; tls_cert <- "mqtt_tls_cert" "--mqtt-tls-cert" = self.mqtt_tls_cert.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; tls_key <- "mqtt_tls_key" "--mqtt-tls-key" = self.mqtt_tls_key.clone().unwrap_or_default());
        mqtt_flag!(m, q, names; spool_dir <- "mqtt_spool" "--mqtt-spool" = self.mqtt_spool.clone());
        mqtt_flag!(m, q, names; spool_max_mb <- "mqtt_spool_max_mb" "--mqtt-spool-max-mb" = self.mqtt_spool_max_mb);
        mqtt_flag!(m, q, names; drain_timeout_s <- "mqtt_drain_timeout" "--mqtt-drain-timeout" = self.mqtt_drain_timeout);
        q
    }
}
