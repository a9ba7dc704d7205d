//! The containers and codecs a user is likely to hand in, made on the spot with
//! GStreamer's own encoders: H.264 in MP4, VP8 in WebM, VP9 in MKV, MPEG-4 part 2 in
//! AVI (the committed clip covers MS-MPEG-4 in AVI). Each must decode, run through
//! the detector and come out with the same frame count and size.

mod common;

use std::process::Command;

use common::*;

fn make_clip(path: &std::path::Path, encode: &[&str]) {
    let pipeline = format!(
        "videotestsrc num-buffers=12 pattern=smpte ! video/x-raw,width=352,height=288,framerate=12/1 ! {}",
        encode.join(" ")
    );
    make_media(path, &pipeline);
}

#[test]
fn common_containers_and_codecs_decode() {
    let dir = scratch();
    let cases: [(&str, &[&str]); 4] = [
        ("h264.mp4", &["x264enc", "!", "mp4mux"]),
        ("vp8.webm", &["vp8enc", "!", "webmmux"]),
        ("vp9.mkv", &["vp9enc", "deadline=1", "!", "matroskamux"]),
        ("mpeg4.avi", &["avenc_mpeg4", "!", "avimux"]),
    ];
    for (name, encode) in cases {
        let input = dir.path().join(name);
        make_clip(&input, encode);
        let video = dir.path().join(format!("{name}.out.mp4"));
        let meta = dir.path().join(format!("{name}.jsonl"));
        ok(&pedvision(&[
            "run",
            "--input",
            path_str(&input),
            "--output",
            path_str(&video),
            "--metadata",
            path_str(&meta),
        ]));
        let (frames, w, h, rate) = probe(&video);
        assert_eq!(
            (frames, w, h, rate.as_str()),
            (12, 352, 288, "12/1"),
            "{name}"
        );
        let lines = read_jsonl(&meta);
        assert_eq!(lines.len(), 12, "{name}");
        assert_eq!(
            (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
            (Some(352), Some(288)),
            "{name}"
        );
    }
}

#[test]
fn odd_frame_width_is_handled() {
    // 3·W not a multiple of 4: GStreamer pads RGB rows; frames must be repacked.
    let dir = scratch();
    let input = dir.path().join("odd.mp4");
    make_media(
        &input,
        "videotestsrc num-buffers=6 ! video/x-raw,width=321,height=241,framerate=5/1 ! x264enc ! mp4mux",
    );
    let video = dir.path().join("odd.out.mp4");
    annotate(&input, &video);
    let (frames, w, h, _) = probe(&video);
    // The output keeps the odd size (x264enc negotiates a chroma format that fits).
    assert_eq!((frames, w, h), (6, 321, 241));
}

/// Runs the clip at `input` to an annotated video only.
fn annotate(input: &std::path::Path, video: &std::path::Path) {
    ok(&pedvision(&[
        "run",
        "--input",
        path_str(input),
        "--output",
        path_str(video),
        "--no-metadata",
    ]));
}

/// The colour matrix ffprobe reads from a video's first stream.
fn colour_space(path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=color_space",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn output_keeps_the_source_colour_space() {
    // The overlay draws in the source's YUV, so the MP4 must say which matrix that
    // is; otherwise players would shift the colours of HD (BT.709) video.
    let dir = scratch();
    for (colorimetry, size, want) in [
        ("bt709", "1280,height=720", "bt709"),
        ("bt601", "640,height=480", "smpte170m"),
    ] {
        let input = dir.path().join(format!("{colorimetry}.mp4"));
        make_media(
            &input,
            &format!(
                "videotestsrc num-buffers=5 ! video/x-raw,width={size},framerate=5/1,colorimetry={colorimetry} ! x264enc ! mp4mux"
            ),
        );
        let video = dir.path().join(format!("{colorimetry}.out.mp4"));
        annotate(&input, &video);
        assert_eq!(colour_space(&video), want, "{colorimetry}");
    }
}
