use std::time::Instant;
use haven_pose::kernel::*;
fn main() {
    for &(m, n, k) in &[(64usize, 6400usize, 576usize), (64, 480, 576), (64, 96, 576), (128, 96, 1152), (16, 1008, 27)] {
        let a = vec![0.5f32; m * k];
        let pa = pack_a(&a, m, k);
        let row = vec![0.25f32; n];
        let mut bp = vec![0f32; n.div_ceil(NR) * NR * k];
        for r in 0..k { pack_b_row(&row, r, k, &mut bp); }
        let bias = vec![0f32; m.div_ceil(MR) * MR];
        let mut c = vec![0f32; m * n];
        let reps = (2e9 / (2.0 * (m * n * k) as f64)).max(3.0) as usize;
        let t0 = Instant::now();
        for _ in 0..reps {
            gemm_tile(m, n, k, &pa, &bp, &bias, true, c.as_mut_ptr(), n);
        }
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        println!("m={m} n={n} k={k}: {:.3} ms, {:.1} GFLOP/s", dt * 1e3, 2.0 * (m * n * k) as f64 / dt / 1e9);
    }
}
