//! What the golden tests (pose and detect) share: where the fixtures are and how their letterboxed
//! frames become the network's input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// The repository root: where the build was made, or `HAVEN_REPO_ROOT` (a test binary copied to
/// another machine with the weights and fixtures, see scripts/gpu_check.sh).
pub fn root() -> PathBuf {
    std::env::var_os("HAVEN_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A file of `tests/fixtures/<dir>/`.
pub fn fixture_in(dir: &str, name: &str) -> PathBuf {
    root().join("tests/fixtures").join(dir).join(name)
}

pub fn load_safetensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixture's letterboxed RGB u8 frame as the network's input, [1, 3, H, W] / 255.
pub fn letterboxed_input(io: &HashMap<String, Tensor>) -> Tensor {
    let img = io["letterboxed_rgb_hwc_u8"].to_dtype(DType::F32).unwrap();
    (img.permute((2, 0, 1)).unwrap().unsqueeze(0).unwrap() / 255.0).unwrap()
}

/// The same frame as the server hands it over: BGR u8, HWC.
pub fn letterboxed_bgr(io: &HashMap<String, Tensor>) -> Vec<u8> {
    let rgb = io["letterboxed_rgb_hwc_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
    rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
}
