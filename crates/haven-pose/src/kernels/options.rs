//! The kernels' switches, read once when a model is loaded and passed down (never read from the
//! environment inside a kernel).
//!
//! Owns: [`KernelOptions`], [`Winograd4`] and [`Precision`]. Imports nothing from the crate (the bottom layer).

/// Which convolution paths the kernels take. [`KernelOptions::default`] is the tuned engine;
/// [`KernelOptions::from_env`] applies the `HAVEN_*` environment switches on top (the model
/// loader calls it once); tests and benchmarks build one in code to force a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Dense 3x3 stride-1 convolutions by Winograd where it pays (`HAVEN_WINOGRAD=0`: off).
    pub winograd: bool,
    /// When Winograd uses F(4x4, 3x3) rather than F(2x2, 3x3) (`HAVEN_WINOGRAD4=0` / `1`).
    pub winograd4: Winograd4,
    /// The 8 x 24 GEMM micro-kernel where the CPU has AVX-512F and AVX-512VL
    /// (`HAVEN_WIDE_KERNEL=0`: always the 4 x 24 one). Without AVX-512 this request is ignored.
    pub wide_kernel: bool,
    /// Print every dense convolution's time and GFLOP/s to stderr (`HAVEN_CONV_PROFILE=1`).
    pub conv_profile: bool,
    /// Layers on the direct path hold their GEMM panels as the checkpoint's own 16-bit values and a
    /// scale per output channel, widened to the very same f32 panels at each call (half the memory
    /// for a little CPU); set from a model's `half_weights` setting at load, never from the
    /// environment. Layers whose weights are not 16-bit values keep f32.
    pub half_weights: bool,
    /// The arithmetic of the dense convolutions (the one switch here that changes the numbers):
    /// set from [`crate::PoseOptions::precision`] at load, never from the environment.
    pub precision: Precision,
}

/// The arithmetic of the dense convolutions on HAVEN's CPU kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the default; the goldens' precision).
    #[default]
    F32,
    /// 8-bit integer dot products for the dense convolutions followed by SiLU (weights per output
    /// channel, activations per tensor); the first convolution, the depthwise ones, attention and
    /// the heads' last convolutions stay f32 (docs/pose.md, "8-bit path").
    Int8,
}

impl Precision {
    /// `"f32"` / `"int8"`, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!("\"{s}\" is not a precision: use \"f32\" or \"int8\"")),
        }
    }
}

/// When the Winograd path uses F(4x4, 3x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd4 {
    /// On maps of at least 25 4 x 4 tiles (the default).
    Auto,
    /// Never (`HAVEN_WINOGRAD4=0`).
    Never,
    /// For every Winograd layer (`HAVEN_WINOGRAD4=1`).
    Always,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            winograd: true,
            winograd4: Winograd4::Auto,
            wide_kernel: true,
            conv_profile: false,
            half_weights: false,
            precision: Precision::F32,
        }
    }
}

impl KernelOptions {
    /// The defaults with the environment switches applied: `HAVEN_WINOGRAD`, `HAVEN_WINOGRAD4`,
    /// `HAVEN_WIDE_KERNEL`, `HAVEN_CONV_PROFILE` (see docs/pose.md).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`KernelOptions::from_env`] over any variable lookup (for tests).
    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let off = |name: &str, default: bool| get(name).map_or(default, |v| v != "0");
        Self {
            winograd: off("HAVEN_WINOGRAD", d.winograd),
            winograd4: match get("HAVEN_WINOGRAD4") {
                None => Winograd4::Auto,
                Some(v) if v == "0" => Winograd4::Never,
                Some(_) => Winograd4::Always,
            },
            wide_kernel: off("HAVEN_WIDE_KERNEL", d.wide_kernel),
            conv_profile: off("HAVEN_CONV_PROFILE", d.conv_profile),
            half_weights: d.half_weights,
            precision: d.precision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_switches_map_to_options() {
        let none = KernelOptions::from_lookup(|_| None);
        assert_eq!(none, KernelOptions::default());
        let all = KernelOptions::from_lookup(|n| {
            Some(if n == "HAVEN_CONV_PROFILE" { "1" } else { "0" }.to_string())
        });
        assert_eq!(
            all,
            KernelOptions {
                winograd: false,
                winograd4: Winograd4::Never,
                wide_kernel: false,
                conv_profile: true,
                half_weights: false,
                precision: Precision::F32,
            }
        );
        let w4 = KernelOptions::from_lookup(|n| (n == "HAVEN_WINOGRAD4").then(|| "1".into()));
        assert_eq!(w4.winograd4, Winograd4::Always);
    }
}
