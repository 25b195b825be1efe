//! Weighted rendezvous hashing: which live node should own a camera. A node with twice the capacity
//! wins about twice the cameras, and a node that leaves moves only the cameras it won.

/// A stable hash of `camera` and `node` in (0, 1).
fn hash01(camera: &str, node: &str) -> f64 {
    // FNV-1a 64, then a finaliser (splitmix64) so that close names spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera.bytes().chain([0u8]).chain(node.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Weighted rendezvous hashing: the node with the highest `-capacity / ln(hash01)`.
pub fn rendezvous_winner(camera: &str, nodes: &[(String, f64)]) -> Option<String> {
    nodes
        .iter()
        .map(|(node, capacity)| (node, -capacity / hash01(camera, node).ln()))
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(node, _)| node.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn rendezvous_spreads_by_capacity_and_moves_only_the_leavers_cameras() {
        let three = nodes(&[("a", 1.0), ("b", 1.0), ("c", 2.0)]);
        let ids: Vec<String> = (0..4000).map(|i| format!("cam{i}")).collect();
        let owner = |id: &str, n: &[(String, f64)]| rendezvous_winner(id, n).unwrap();
        let count = |name: &str| ids.iter().filter(|id| owner(id, &three) == name).count();
        let (a, b, c) = (count("a"), count("b"), count("c"));
        assert!((800..1200).contains(&a) && (800..1200).contains(&b) && (1800..2200).contains(&c), "{a} {b} {c}");
        let two = nodes(&[("a", 1.0), ("c", 2.0)]);
        for id in &ids {
            if owner(id, &three) != "b" {
                assert_eq!(owner(id, &two), owner(id, &three), "{id} did not live on b and must not move");
            }
        }
        assert_eq!(rendezvous_winner("x", &[]), None);
    }
}
