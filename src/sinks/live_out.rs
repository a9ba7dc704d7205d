//! Live outputs of annotated frames: an RTSP server that serves each stream on its
//! own mount (`rtsp://ADDR/streamN`), and an opt-in display window per stream.
//!
//! The RTSP server (gstreamer-rtsp-server) runs its GLib main loop on its own
//! thread. Each mount's media is `appsrc ! x264enc (zerolatency) ! rtph264pay`,
//! shared between clients; the post stage pushes frames into the appsrc while a
//! client is connected and skips the encoding work when none is.

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;

use super::SinkError;
use crate::frame::Frame;

/// The appsrc of a mount's current media, if a client is watching.
type Slot = Arc<Mutex<Option<gst_app::AppSrc>>>;

/// A running RTSP server.
pub struct RtspOut {
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    _server: rtsp_server::RTSPServer,
    mounts: rtsp_server::RTSPMountPoints,
    address: String,
    port: u16,
}

/// Where one stream's frames go on the RTSP server.
#[derive(Clone)]
pub struct RtspOutlet {
    slot: Slot,
    caps_set: Arc<Mutex<Option<(u32, u32)>>>,
}

impl RtspOut {
    /// Starts a server on `address:port` (`127.0.0.1:8554` binds to loopback only)
    /// with one mount per stream id below `streams`, and returns their outlets in
    /// stream order. More mounts can be added while it runs ([`RtspOut::outlet`]).
    pub fn start(bind: &str, streams: u32) -> Result<(Self, Vec<RtspOutlet>), SinkError> {
        gst::init().map_err(|e| SinkError::EncoderSetup(e.to_string()))?;
        let (address, port) = bind
            .rsplit_once(':')
            .and_then(|(a, p)| p.parse::<u16>().ok().map(|p| (a.to_string(), p)))
            .ok_or_else(|| {
                SinkError::EncoderSetup(format!("--rtsp-out {bind:?}: expected ADDRESS:PORT"))
            })?;
        let context = glib::MainContext::new();
        let server = rtsp_server::RTSPServer::new();
        server.set_address(&address);
        server.set_service(&port.to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| SinkError::EncoderSetup("RTSP server without mount points".into()))?;
        let source_id = server
            .attach(Some(&context))
            .map_err(|e| SinkError::EncoderSetup(format!("cannot serve RTSP on {bind}: {e}")))?;
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let loop_c = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("rtsp-out".into())
            .spawn(move || {
                let _guard = context.acquire();
                loop_c.run();
                source_id.remove();
            })
            .map_err(|e| SinkError::EncoderSetup(e.to_string()))?;
        let bound_port = server.bound_port();
        tracing::info!(address = %address, port = bound_port, streams, "RTSP output serving rtsp://{address}:{bound_port}/streamN");
        let out = Self {
            main_loop,
            thread: Some(thread),
            _server: server,
            mounts,
            address,
            port: bound_port as u16,
        };
        let outlets = (0..streams).map(|id| out.outlet(id)).collect();
        Ok((out, outlets))
    }

    /// Mounts stream `id` at `/streamID` and returns where its frames go.
    pub fn outlet(&self, id: u32) -> RtspOutlet {
        let factory = rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true max-bytes=4000000 ! queue leaky=downstream max-size-buffers=4 ! \
             videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max=30 ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        );
        factory.set_shared(true);
        let slot: Slot = Arc::new(Mutex::new(None));
        let caps_set: Arc<Mutex<Option<(u32, u32)>>> = Arc::new(Mutex::new(None));
        let (slot_c, caps_c) = (slot.clone(), caps_set.clone());
        factory.connect_media_configure(move |_, media| {
            let Some(src) = media
                .element()
                .downcast::<gst::Bin>()
                .ok()
                .and_then(|bin| bin.by_name_recurse_up("src"))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            else {
                return;
            };
            if let Ok(mut g) = caps_c.lock() {
                *g = None;
            }
            if let Ok(mut g) = slot_c.lock() {
                *g = Some(src);
            }
            let slot_unprepared = slot_c.clone();
            media.connect_unprepared(move |_| {
                if let Ok(mut g) = slot_unprepared.lock() {
                    *g = None;
                }
            });
        });
        self.mounts.add_factory(&format!("/stream{id}"), factory);
        RtspOutlet { slot, caps_set }
    }

    /// Unmounts stream `id` (clients watching it see the stream end).
    pub fn remove(&self, id: u32) {
        self.mounts.remove_factory(&format!("/stream{id}"));
    }

    /// The URL of a stream's mount.
    pub fn url(&self, stream: u32) -> String {
        format!("rtsp://{}:{}/stream{stream}", self.address, self.port)
    }
}

impl Drop for RtspOut {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RtspOutlet {
    /// Sends a frame to the watching clients, if any.
    pub fn push(&self, frame: &Frame) {
        let Some(src) = self.slot.lock().ok().and_then(|g| g.clone()) else {
            return;
        };
        if let Ok(mut caps_set) = self.caps_set.lock()
            && *caps_set != Some((frame.width, frame.height))
        {
            let info = gst_video::VideoInfo::builder(
                gst_video::VideoFormat::I420,
                frame.width,
                frame.height,
            )
            .fps(gst::Fraction::new(frame.fps.0.max(1), frame.fps.1.max(1)))
            .build();
            if let Ok(caps) = info.and_then(|i| i.to_caps()) {
                src.set_caps(Some(&caps));
                *caps_set = Some((frame.width, frame.height));
            }
        }
        if src.push_buffer(packed_i420_buffer(frame)).is_err()
            && let Ok(mut g) = self.slot.lock()
        {
            *g = None;
        }
    }
}

/// A GStreamer buffer of a frame's planes laid out as GStreamer's default I420
/// info expects.
pub fn packed_i420_buffer(frame: &Frame) -> gst::Buffer {
    let info =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, frame.width, frame.height)
            .build();
    let data = match info {
        Ok(info) => {
            super::encoder::layout_i420(&info, frame.i420.clone(), frame.width, frame.height)
        }
        Err(_) => frame.i420.clone(),
    };
    gst::Buffer::from_mut_slice(data)
}

/// A window showing one stream's annotated frames (`autovideosink`), opt-in.
pub struct Display {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    caps: Option<(u32, u32)>,
}

/// The GStreamer description of the display branch, ending in `sink`.
pub fn display_launch(sink: &str) -> String {
    format!(
        "appsrc name=src is-live=true format=time do-timestamp=true ! queue leaky=downstream max-size-buffers=2 ! videoconvert ! {sink} sync=false"
    )
}

/// The video sink for `--display`: `PEDVISION_VIDEO_SINK` if set (for example
/// `fakevideosink` to run a display pipeline headless), else `autovideosink`, but
/// only where there is a graphical session: without one, autovideosink falls
/// through to the KMS and DirectFB sinks, and GStreamer 1.22 crashes in them.
pub fn display_sink() -> Result<String, SinkError> {
    if let Ok(sink) = std::env::var("PEDVISION_VIDEO_SINK")
        && !sink.trim().is_empty()
    {
        return Ok(sink);
    }
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Err(SinkError::Display(
            "--display needs a graphical session, and neither DISPLAY nor WAYLAND_DISPLAY is set \
             (PEDVISION_VIDEO_SINK=fakevideosink runs it without one)"
                .into(),
        ));
    }
    Ok("autovideosink".into())
}

impl Display {
    /// Opens a window titled after the stream.
    pub fn open() -> Result<Self, SinkError> {
        gst::init().map_err(|e| SinkError::Display(e.to_string()))?;
        let pipeline = gst::parse::launch(&display_launch(&display_sink()?))
            .map_err(|e| SinkError::Display(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| SinkError::Display("not a pipeline".into()))?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| SinkError::Display("appsrc missing".into()))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| SinkError::Display(e.to_string()))?;
        Ok(Self {
            pipeline,
            appsrc,
            caps: None,
        })
    }

    /// Shows a frame.
    pub fn push(&mut self, frame: &Frame) {
        if self.caps != Some((frame.width, frame.height)) {
            if let Ok(caps) = gst_video::VideoInfo::builder(
                gst_video::VideoFormat::I420,
                frame.width,
                frame.height,
            )
            .build()
            .and_then(|i| i.to_caps())
            {
                self.appsrc.set_caps(Some(&caps));
            }
            self.caps = Some((frame.width, frame.height));
        }
        let _ = self.appsrc.push_buffer(packed_i420_buffer(frame));
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.appsrc.end_of_stream();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
