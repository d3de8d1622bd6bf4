//! The smallest complete use of the safe crate: a STORE-mode cache with H2O,
//! 1000 tokens through a budget of 256, every error reported.
//!
//!     make && PKG_CONFIG_PATH=$PWD/lib cargo run --offline \
//!         --manifest-path examples/rust/Cargo.toml --example basic
use kvc::{Cache, DType, Mode};

fn main() -> Result<(), kvc::Error> {
    let (kv_heads, q_heads, dim) = (2u32, 4u32, 64u32);
    let mut cache = Cache::from_spec(kv_heads, q_heads, dim, 256, DType::F16, Mode::Store, "h2o recent=32")?;
    let mut out = vec![0.0f32; (q_heads * dim) as usize];
    for pos in 0..1000i64 {
        let x = |i: usize| ((pos as usize * 31 + i * 7) % 97) as f32 / 97.0 - 0.5;
        let k: Vec<f32> = (0..(kv_heads * dim) as usize).map(x).collect();
        let q: Vec<f32> = (0..(q_heads * dim) as usize).map(|i| x(i + 3)).collect();
        cache.append(pos, &k, &k)?;
        cache.attend(&q, &mut out)?;
    }
    println!("libkvc {}: {} tokens resident of 1000, out[0] = {:.4}", kvc::version(), cache.len(), out[0]);
    Ok(())
}
