//! Each layer's time on stderr (`HAVEN_POSE_PROFILE=1`); nothing at all when off.

use std::time::Instant;

use candle_core::Tensor;

use super::layer::Layer;

/// Prints each layer's time when on.
#[derive(Clone, Copy)]
pub(crate) struct LayerProfiler {
    on: bool,
}

/// When a layer started (only when profiling).
pub(crate) struct LayerStart(Option<Instant>);

impl LayerProfiler {
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    pub fn start(&self) -> LayerStart {
        LayerStart(self.on.then(Instant::now))
    }

    /// Layer `i` made `y`.
    pub fn layer(&self, i: usize, layer: &Layer, start: LayerStart, y: &Tensor) {
        if let Some(t0) = start.0 {
            let name = layer.profile_name();
            eprintln!(
                "layer {i:2} {name:9} {:7.2} ms  -> {:?}",
                t0.elapsed().as_secs_f64() * 1e3,
                y.dims()
            );
        }
    }

    /// The head (layer `i`) ran.
    pub fn head(&self, i: usize, start: LayerStart) {
        if let Some(t0) = start.0 {
            eprintln!(
                "layer {i:2} Head      {:7.2} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
