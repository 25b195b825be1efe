//! Where the network runs: `cpu`, `cuda:N` or `metal`, parsed from a setting and opened as a Candle
//! [`Device`], with errors that say whether the build or the machine lacks it.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::PoseError;

/// A Candle device by name: `cpu` (the default), `cuda` / `cuda:N` (built with the `cuda` or `cudnn`
/// feature), `metal` (built with the `metal` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
    Metal,
}

impl FromStr for DeviceSpec {
    type Err = PoseError;

    fn from_str(s: &str) -> Result<Self, PoseError> {
        let bad = || PoseError::Device {
            device: s.to_string(),
            msg: "expected \"cpu\", \"cuda\", \"cuda:N\" (N = 0, 1, ...) or \"metal\"".into(),
        };
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "metal" => Ok(Self::Metal),
            t => match t.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

impl DeviceSpec {
    /// Whether this build can drive the device at all (the cargo feature is on); the machine may
    /// still lack it, which [`DeviceSpec::open`] finds.
    pub fn built_in(&self) -> Result<(), PoseError> {
        let (feature, ok) = match self {
            Self::Cpu => return Ok(()),
            Self::Cuda(_) => ("`cuda` (or `cudnn`)", cfg!(feature = "cuda")),
            Self::Metal => ("`metal`", cfg!(feature = "metal")),
        };
        if ok {
            Ok(())
        } else {
            Err(PoseError::Device {
                device: self.to_string(),
                msg: format!(
                    "this build has no {} support: rebuild with the {feature} cargo feature \
                     (`cargo build --release --features {}`), or use \"cpu\"",
                    if matches!(self, Self::Metal) {
                        "Metal"
                    } else {
                        "CUDA"
                    },
                    if matches!(self, Self::Metal) {
                        "metal"
                    } else {
                        "cuda"
                    },
                ),
            })
        }
    }

    /// The Candle device, or why it cannot be had (the build lacks the feature, or the machine the
    /// device or its driver).
    pub fn open(&self) -> Result<Device, PoseError> {
        self.built_in()?;
        let dev = match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => Device::new_cuda(*n),
            Self::Metal => Device::new_metal(0),
        };
        dev.map_err(|e| PoseError::Device {
            device: self.to_string(),
            msg: format!("cannot open it on this machine: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda:0", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("metal", DeviceSpec::Metal),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for s in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            let e = s.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("expected \"cpu\""), "{s}: {e}");
        }
    }

    #[test]
    fn cpu_opens_and_a_missing_feature_is_named() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("cuda:0") && e.contains("--features cuda"), "{e}");
        }
        if !cfg!(feature = "metal") {
            let e = DeviceSpec::Metal.open().unwrap_err().to_string();
            assert!(e.contains("--features metal"), "{e}");
        }
    }
}
