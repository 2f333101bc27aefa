use rca_gpu::{ops, tensor::Tensor};
mod common;
fn main() {
    let gpu = common::gpu().expect("gpu");
    let elems = 65536 * 16;
    for round in 0..4 {
        for per in [1, 2, 4, 8, 16] {
            unsafe { std::env::set_var("PER", per.to_string()) };
            let mut x = Tensor::zeros(&gpu, [elems]).unwrap();
            x = ops::relu(&x).unwrap();
            gpu.sync();
            let n = 100;
            let t = std::time::Instant::now();
            for _ in 0..n { x = ops::relu(&x).unwrap(); }
            gpu.sync();
            let dt = t.elapsed().as_secs_f64();
            println!("round {round} per {per}: {:.3} ms each, {:.2} GB/s", dt * 1e3 / n as f64, 8.0 * elems as f64 * n as f64 / dt / 1e9);
        }
    }
}
