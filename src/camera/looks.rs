//! The models' newest answers for one camera, and what of them is drawn and sent: kept from frame to
//! frame until a newer answer comes or the model is switched off.

use crate::inference::{Detection, Engines, ModelDetections};

/// The newest answer one model gave for this camera, drawn on every frame until a newer one comes.
pub struct Looked {
    pub detections: Vec<Detection>,
    pub frame_index: u64,
    pub timestamp: f64,
    /// Regions the model looked at (0: the whole frame).
    pub regions: usize,
}

pub struct Looks {
    /// Each model's newest answer, by the model's index in the scheduler (none: not looked yet, or
    /// switched off).
    looked: Vec<Option<Looked>>,
    /// Models that have had their first look at this camera since they were switched on.
    first_looked: Vec<bool>,
    /// Bumped whenever `looked` changes: what is drawn and sent is rebuilt then.
    generation: u64,
    shown_generation: u64,
    /// The newest detections of the camera's models, by model (metadata) and all together (drawing).
    shown: Vec<ModelDetections>,
    shown_flat: Vec<Detection>,
}

impl Looks {
    /// For `models` models (all the scheduler has).
    pub fn new(models: usize) -> Self {
        Self {
            looked: (0..models).map(|_| None).collect(),
            first_looked: vec![false; models],
            generation: 0,
            shown_generation: u64::MAX,
            shown: Vec::new(),
            shown_flat: Vec::new(),
        }
    }

    pub fn get(&self, model: usize) -> Option<&Looked> {
        self.looked.get(model)?.as_ref()
    }

    pub fn first_looked(&self, model: usize) -> bool {
        self.first_looked[model]
    }

    pub fn mark_first_looked(&mut self, model: usize) {
        self.first_looked[model] = true;
    }

    /// A model's new answer.
    pub fn record(&mut self, model: usize, looked: Looked) {
        self.looked[model] = Some(looked);
        self.generation += 1;
    }

    /// Forgets the answers of models the camera no longer runs: their detections leave the picture
    /// at once, and a model switched on again gets a first look of its own.
    pub fn keep_only(&mut self, wanted: &[usize]) {
        for m in 0..self.looked.len() {
            if !wanted.contains(&m) && (self.looked[m].is_some() || self.first_looked[m]) {
                self.looked[m] = None;
                self.first_looked[m] = false;
                self.generation += 1;
            }
        }
    }

    /// The detections shown and sent, rebuilt when an answer came or a model was switched off.
    pub fn refresh_shown(&mut self, wanted: &[usize], engines: Option<&Engines>) {
        if self.shown_generation == self.generation {
            return;
        }
        self.shown_generation = self.generation;
        self.shown = wanted
            .iter()
            .filter_map(|&m| {
                let looked = self.looked.get(m)?.as_ref()?;
                let engine = engines?.0.get(m)?;
                Some(ModelDetections { model: engine.model().clone(), task: engine.task(), detections: looked.detections.clone() })
            })
            .collect();
        self.shown_flat = self.shown.iter().flat_map(|g| g.detections.iter().cloned()).collect();
    }

    /// The detections shown, by model.
    pub fn shown(&self) -> &[ModelDetections] {
        &self.shown
    }

    /// The detections shown, all together (drawing).
    pub fn shown_flat(&self) -> &[Detection] {
        &self.shown_flat
    }

    /// What is drawn: changes with each answer (the JPEG cache keys on it).
    pub fn shown_generation(&self) -> u64 {
        self.shown_generation
    }
}
