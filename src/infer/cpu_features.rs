//! What this CPU can do for inference: the instruction-set extensions that decide
//! which precisions run natively (AMX and AVX-512 BF16 for bf16, AVX-512 FP16 and
//! AMX-FP16 for fp16, VNNI for int8), read once from `/proc/cpuinfo`.

use std::sync::OnceLock;

/// The extensions of the CPU pedvision runs on that matter for inference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx512f: bool,
    pub avx512_vnni: bool,
    pub avx512_bf16: bool,
    pub avx512_fp16: bool,
    pub amx_tile: bool,
    pub amx_bf16: bool,
    pub amx_int8: bool,
    pub amx_fp16: bool,
    pub avx_vnni: bool,
}

impl CpuFeatures {
    /// This machine's features (all false where `/proc/cpuinfo` is unreadable).
    pub fn detect() -> Self {
        static DETECTED: OnceLock<CpuFeatures> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            std::fs::read_to_string("/proc/cpuinfo")
                .map(|text| Self::from_cpuinfo(&text))
                .unwrap_or_default()
        })
    }

    /// The features named on the first `flags` line of a `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> Self {
        let flags: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.split_whitespace().collect())
            .unwrap_or_default();
        let has = |name: &str| flags.contains(&name);
        Self {
            avx512f: has("avx512f"),
            avx512_vnni: has("avx512_vnni"),
            avx512_bf16: has("avx512_bf16"),
            avx512_fp16: has("avx512_fp16"),
            amx_tile: has("amx_tile"),
            amx_bf16: has("amx_bf16"),
            amx_int8: has("amx_int8"),
            amx_fp16: has("amx_fp16"),
            avx_vnni: has("avx_vnni"),
        }
    }

    /// bf16 arithmetic in hardware (AMX or AVX-512 BF16).
    pub fn native_bf16(&self) -> bool {
        self.amx_bf16 || self.avx512_bf16
    }

    /// fp16 arithmetic in hardware (AVX-512 FP16 or AMX-FP16).
    pub fn native_fp16(&self) -> bool {
        self.avx512_fp16 || self.amx_fp16
    }

    /// int8 dot products in hardware (VNNI or AMX-INT8).
    pub fn native_int8(&self) -> bool {
        self.avx512_vnni || self.avx_vnni || self.amx_int8
    }

    /// The features present, by their `/proc/cpuinfo` names ("none" if none).
    pub fn names(&self) -> String {
        let all = [
            ("avx512f", self.avx512f),
            ("avx512_vnni", self.avx512_vnni),
            ("avx512_bf16", self.avx512_bf16),
            ("avx512_fp16", self.avx512_fp16),
            ("avx_vnni", self.avx_vnni),
            ("amx_tile", self.amx_tile),
            ("amx_bf16", self.amx_bf16),
            ("amx_int8", self.amx_int8),
            ("amx_fp16", self.amx_fp16),
        ];
        let present: Vec<&str> = all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        if present.is_empty() {
            "none".into()
        } else {
            present.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_from_the_first_flags_line() {
        let text = "processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni amx_bf16 amx_tile\n\
                    processor\t: 1\nflags\t\t: fpu\n";
        let f = CpuFeatures::from_cpuinfo(text);
        assert!(f.avx512f && f.avx512_vnni && f.amx_bf16 && f.amx_tile);
        assert!(!f.avx512_bf16 && !f.amx_int8);
        assert!(f.native_bf16() && f.native_int8() && !f.native_fp16());
        assert_eq!(f.names(), "avx512f avx512_vnni amx_tile amx_bf16");
    }

    #[test]
    fn no_flags_means_nothing_native() {
        let f = CpuFeatures::from_cpuinfo("garbage");
        assert_eq!(f, CpuFeatures::default());
        assert_eq!(f.names(), "none");
        // A flag name inside another is not the flag.
        assert!(!CpuFeatures::from_cpuinfo("flags : xamx_bf16").amx_bf16);
    }
}
