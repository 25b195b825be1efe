//! When each layer's output can be given back: computed once per network, followed on every pass.

use candle_core::Tensor;

use super::layer::{Layer, Node};

/// The reclaim plan of a network: the last reader of each body layer's output, and (HAVEN's path)
/// the upsamplings that their concatenation does itself (`fused::CatOp`), whose input then lives
/// until that concatenation.
pub(crate) struct ReclaimPlan {
    /// index of the last node that reads each node's output (the head: one past the body)
    last_use: Vec<usize>,
    /// per node: for an upsampling done by the concatenation that reads it, the node it upsamples
    fused_upsample_of: Vec<Option<usize>>,
}

impl ReclaimPlan {
    /// The plan of `body` followed by a head reading `head_from`; `fuse_upsampling` on HAVEN's path.
    pub fn new(body: &[Node], head_from: &[usize], fuse_upsampling: bool) -> Self {
        let n = body.len();
        let mut last_use: Vec<usize> = (0..n).collect();
        let mut readers = vec![0usize; n];
        let reads = body.iter().map(|node| node.from.as_slice());
        for (i, from) in reads.chain([head_from]).enumerate() {
            for &f in from {
                last_use[f] = last_use[f].max(i);
                readers[f] += 1;
            }
        }
        // an upsampling whose only reader is a two-map concatenation
        let fused_upsample_of: Vec<Option<usize>> = (0..n)
            .map(|i| {
                let into_concat = body.get(last_use[i]).is_some_and(|reader| {
                    matches!(reader.layer, Layer::Concat) && reader.from.len() == 2
                });
                let fused = fuse_upsampling
                    && matches!(body[i].layer, Layer::Upsample)
                    && readers[i] == 1
                    && into_concat;
                fused.then(|| body[i].from[0])
            })
            .collect();
        for i in 0..n {
            if let Some(src) = fused_upsample_of[i] {
                last_use[src] = last_use[src].max(last_use[i]);
            }
        }
        Self {
            last_use,
            fused_upsample_of,
        }
    }

    /// Whether node `i` is an upsampling its concatenation does.
    pub fn is_fused_upsample(&self, i: usize) -> bool {
        self.fused_upsample_of[i].is_some()
    }
}

/// The outputs of the layers run so far in one pass, each dropped once its last reader has run
/// (and on HAVEN's path its memory handed back to the buffer pool).
pub(crate) struct Outputs<'p> {
    plan: &'p ReclaimPlan,
    maps: Vec<Option<Tensor>>,
    to_pool: bool,
}

impl<'p> Outputs<'p> {
    pub fn new(plan: &'p ReclaimPlan, to_pool: bool) -> Self {
        Self {
            plan,
            maps: Vec::with_capacity(plan.last_use.len()),
            to_pool,
        }
    }

    /// Node `f`'s output.
    pub fn get(&self, f: usize) -> &Tensor {
        self.maps[f].as_ref().expect("freed too early")
    }

    /// What reading node `f` reads: its output, or for an upsampling its concatenation does, the map
    /// to upsample (`true`).
    pub fn read(&self, f: usize) -> (&Tensor, bool) {
        match self.plan.fused_upsample_of[f] {
            Some(src) => (self.get(src), true),
            None => (self.get(f), false),
        }
    }

    /// The next node's output (`None`: an upsampling its concatenation does).
    pub fn push(&mut self, y: Option<Tensor>) {
        self.maps.push(y);
    }

    /// Gives back what no node after `i` reads.
    pub fn release_dead(&mut self, i: usize) {
        for (j, out) in self.maps.iter_mut().enumerate().take(i) {
            if self.plan.last_use[j] <= i {
                if let Some(t) = out.take() {
                    if self.to_pool {
                        crate::fused::reclaim(&t);
                    }
                }
            }
        }
    }

    /// Gives back everything, once the head has run.
    pub fn release_all(self) {
        if self.to_pool {
            self.maps.iter().flatten().for_each(crate::fused::reclaim);
        }
    }
}
