// matmul_cpu_sg: `matmul_cpu` (shaders/matmul.wgsl) with the weights shared across a
// subgroup, for CPU adapters whose subgroups are 8 lanes (lavapipe on 256-bit vectors).
//
//   C[z, m, n] = sum_k A[z, m, k] · B[z, k, n]  (+ bias[m])  (+ C[z, m, n]: ACC)
// (then max(0, ·) with RELU), A given as K×M (a_sm = 1), B as K×N (b_sn = 1).
//
// Why: Mesa 25.0's llvmpipe takes its scalar-and-broadcast path only for a load whose
// address is built from constants and immediates; the weight row of `matmul_cpu`, the
// same for all 8 lanes but indexed by the loop counter and the workgroup, is fetched lane
// by lane, four bounds-checked scalars each, which costs more than its 64 FMAs. Here each
// lane loads one different vec4 (the 16 rows of two steps of k: lane l holds rows
// m0 + 4·(l % 4) … + 3 of step k + l / 4) and `subgroupBroadcast` hands each to all
// lanes: one vector load and eight register shuffles per two steps of k instead of eight
// lane-by-lane vec4 loads.
//
// Each invocation computes 16 rows × 4 columns of C, as `matmul_cpu` does, with the same
// order of accumulation. (Two column quads, as the 32- and 64-row kernels take, made it
// slower here: 1.08–1.09× the time at M 16, K 16 and 256.) No invocation returns before
// the loop (a broadcast needs all 8 lanes): columns past N recompute the last column quad
// and are not stored; a step of k past K gets zero weights. N and every stride are
// multiples of 4, and A's rows hold M rounded up to a quad (the caller checks; see
// `last_quad`). Grid: (N/4 / 64, ⌈M/16⌉, batch). Only created on devices with subgroups:
// naga rejects the subgroup built-ins elsewhere, so it lives in a file of its own. Its
// parameter block, bindings, overrides and `store_quad` are shaders/matmul_common.wgsl's.

// A product over a channel concatenation (`ops::conv1x1_cat`: the inception blocks'
// merges) runs as one dispatch of `matmul_cpu_sg8`, `_sg`, `_sg32` or `_sg64` with SEGS
// inputs: B then X1, X2, X3, of p.k, p.k1, p.k2, p.k3 steps of k, each a whole
// (N, k_s, H, W) tensor, against consecutive row blocks of A. The accumulators run on from one input to
// the next and C is written once: on lavapipe, where each load and store is a loop over
// the lanes, a sum of one product per input, each adding into C, loaded and stored C once
// per input (at 256², 4 inputs of 16 channels, 16 outputs: 20–27 ms against 8–11 ms as
// one product over the 64 channels, measured). A plain product binds B in all four slots.
@group(0) @binding(4) var<storage, read> X1: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> X2: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> X3: array<vec4<f32>>;

/// Inputs of the product (1 to 4): one pipeline per count, so a plain product compiles
/// none of the loops over the others.
override SEGS: u32 = 1u;

// `quad8` … `quad64`: one per accumulator count, as WGSL has no array length a function
// could take as a parameter; passing `&(*c)[q]` to one shared four-pointer function instead
// is what naga 30's SPIR-V writer rejects ("Expression … is not cached").

/// Four rows of C (weights w.x … w.w) times one column quad b, on accumulators q … q + 3
/// of an array of 8.
fn quad8(c: ptr<function, array<vec4<f32>, 8>>, q: u32, w: vec4<f32>, b: vec4<f32>) {
    (*c)[q] = fma(vec4<f32>(w.x), b, (*c)[q]);
    (*c)[q + 1u] = fma(vec4<f32>(w.y), b, (*c)[q + 1u]);
    (*c)[q + 2u] = fma(vec4<f32>(w.z), b, (*c)[q + 2u]);
    (*c)[q + 3u] = fma(vec4<f32>(w.w), b, (*c)[q + 3u]);
}

/// Four rows of C (weights w.x … w.w) times one column quad b, on accumulators q … q + 3
/// of an array of 16.
fn quad16(c: ptr<function, array<vec4<f32>, 16>>, q: u32, w: vec4<f32>, b: vec4<f32>) {
    (*c)[q] = fma(vec4<f32>(w.x), b, (*c)[q]);
    (*c)[q + 1u] = fma(vec4<f32>(w.y), b, (*c)[q + 1u]);
    (*c)[q + 2u] = fma(vec4<f32>(w.z), b, (*c)[q + 2u]);
    (*c)[q + 3u] = fma(vec4<f32>(w.w), b, (*c)[q + 3u]);
}

/// Four rows of C (weights w.x … w.w) times two column quads, b on accumulators q … q + 3
/// and b2 on q + 32 … q + 35 of an array of 64 (`matmul_cpu_sg32`).
fn quad32(c: ptr<function, array<vec4<f32>, 64>>, q: u32, w: vec4<f32>, b: vec4<f32>,
          b2: vec4<f32>) {
    (*c)[q] = fma(vec4<f32>(w.x), b, (*c)[q]);
    (*c)[q + 1u] = fma(vec4<f32>(w.y), b, (*c)[q + 1u]);
    (*c)[q + 2u] = fma(vec4<f32>(w.z), b, (*c)[q + 2u]);
    (*c)[q + 3u] = fma(vec4<f32>(w.w), b, (*c)[q + 3u]);
    (*c)[q + 32u] = fma(vec4<f32>(w.x), b2, (*c)[q + 32u]);
    (*c)[q + 33u] = fma(vec4<f32>(w.y), b2, (*c)[q + 33u]);
    (*c)[q + 34u] = fma(vec4<f32>(w.z), b2, (*c)[q + 34u]);
    (*c)[q + 35u] = fma(vec4<f32>(w.w), b2, (*c)[q + 35u]);
}

/// Four rows of C (weights w.x … w.w) times two column quads, b on accumulators q … q + 3
/// and b2 on q + 64 … q + 67 of an array of 128 (`matmul_cpu_sg64`).
fn quad64(c: ptr<function, array<vec4<f32>, 128>>, q: u32, w: vec4<f32>, b: vec4<f32>,
          b2: vec4<f32>) {
    (*c)[q] = fma(vec4<f32>(w.x), b, (*c)[q]);
    (*c)[q + 1u] = fma(vec4<f32>(w.y), b, (*c)[q + 1u]);
    (*c)[q + 2u] = fma(vec4<f32>(w.z), b, (*c)[q + 2u]);
    (*c)[q + 3u] = fma(vec4<f32>(w.w), b, (*c)[q + 3u]);
    (*c)[q + 64u] = fma(vec4<f32>(w.x), b2, (*c)[q + 64u]);
    (*c)[q + 65u] = fma(vec4<f32>(w.y), b2, (*c)[q + 65u]);
    (*c)[q + 66u] = fma(vec4<f32>(w.z), b2, (*c)[q + 66u]);
    (*c)[q + 67u] = fma(vec4<f32>(w.w), b2, (*c)[q + 67u]);
}

/// Input `s` of a product over a concatenation (0: B, the only one of a plain product).
/// Every caller passes a constant, so the choice folds away when the pipeline is compiled.
fn b_in(s: u32, i: u32) -> vec4<f32> {
    switch s {
        case 1u: { return X1[i]; }
        case 2u: { return X2[i]; }
        case 3u: { return X3[i]; }
        default: { return B4[i]; }
    }
}

/// Where input `s` ≥ 1 of a concatenation starts in A (rows past the inputs before it).
fn a_seg(s: u32) -> u32 {
    var k = p.k;
    if (s > 1u) { k += p.k1; }
    if (s > 2u) { k += p.k2; }
    return k * p.a_sk;
}

/// Steps of k of input `s` (`p.k` of input 0, `p.k1` … of the others).
fn k_seg(s: u32) -> u32 {
    switch s {
        case 1u: { return p.k1; }
        case 2u: { return p.k2; }
        case 3u: { return p.k3; }
        default: { return p.k; }
    }
}

/// Where column quad n0 of batch z starts in input `s`: the inputs are whole tensors
/// (N, k_s, H, W), so a batch is k_s rows of B apart.
fn b_seg(s: u32, z: u32, n0: u32) -> u32 {
    if (s == 0u) { return z * p.b_sb + n0; }
    return z * k_seg(s) * p.b_sk + n0;
}

/// `matmul_cpu_sg`'s loop over input `s`: its weights from A row `pa` on, its columns
/// from `pb` on.
fn seg16(s: u32, pa: u32, pb: u32, dk: u32, c: ptr<function, array<vec4<f32>, 16>>) {
    let kn = k_seg(s);
    let last = kn - 1u;
    for (var k = 0u; k < kn; k += 2u) {
        let ka = k + dk;
        let a = select(vec4<f32>(0.0), A4[(pa + min(ka, last) * p.a_sk) / 4u], ka < kn);
        let b0 = b_in(s, (pb + k * p.b_sk) / 4u);
        quad16(c, 0u, subgroupBroadcast(a, 0u), b0);
        quad16(c, 4u, subgroupBroadcast(a, 1u), b0);
        quad16(c, 8u, subgroupBroadcast(a, 2u), b0);
        quad16(c, 12u, subgroupBroadcast(a, 3u), b0);
        let b1 = b_in(s, (pb + min(k + 1u, last) * p.b_sk) / 4u);
        quad16(c, 0u, subgroupBroadcast(a, 4u), b1);
        quad16(c, 4u, subgroupBroadcast(a, 5u), b1);
        quad16(c, 8u, subgroupBroadcast(a, 6u), b1);
        quad16(c, 12u, subgroupBroadcast(a, 7u), b1);
    }
}

@compute @workgroup_size(64, 1, 1)
fn matmul_cpu_sg(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = min(gid.x * 4u, p.n - 4u);
    let m0 = wid.y * 16u;
    let z = wid.z;
    // A subgroup with no column inside N skips the loop (see sg32's).
    if (subgroupAll(gid.x * 4u >= p.n)) { return; }
    // This lane's share of the weights: one row quad (clamped into M) of step k + dk.
    let dk = lane / 4u;
    let pa = p.a_off + z * p.a_sb + min(m0 + 4u * (lane % 4u), last_quad());
    var c: array<vec4<f32>, 16>;
    seg16(0u, pa, b_seg(0u, z, n0), dk, &c);
    if (SEGS > 1u) { seg16(1u, pa + a_seg(1u), b_seg(1u, z, n0), dk, &c); }
    if (SEGS > 2u) { seg16(2u, pa + a_seg(2u), b_seg(2u, z, n0), dk, &c); }
    if (SEGS > 3u) { seg16(3u, pa + a_seg(3u), b_seg(3u, z, n0), dk, &c); }
    if (gid.x * 4u >= p.n) { return; }
    let cz = z * p.c_sb + n0;
    store_quad(cz, m0, c[0], c[1], c[2], c[3]);
    store_quad(cz, m0 + 4u, c[4], c[5], c[6], c[7]);
    store_quad(cz, m0 + 8u, c[8], c[9], c[10], c[11]);
    store_quad(cz, m0 + 12u, c[12], c[13], c[14], c[15]);
}

// ---------------------------------------------------------------------------------------
// matmul_cpu_sg8: `matmul_cpu_sg` with 8 rows per invocation, for M ≤ 8 (the narrow
// layers of a small width: F = 4 has maps of 4 and 8 channels), where 16 rows would be
// half or three quarters clamped copies. Lane l holds row quad l % 2 of step k + l / 2:
// one vector load for four steps of k. The same order of accumulation as `matmul_cpu_sg`.
// Grid: (N/4 / 64, ⌈M/8⌉, batch).

/// `matmul_cpu_sg8`'s loop over input `s`.
fn seg8(s: u32, pa: u32, pb: u32, dk: u32, c: ptr<function, array<vec4<f32>, 8>>) {
    let kn = k_seg(s);
    let last = kn - 1u;
    for (var k = 0u; k < kn; k += 4u) {
        let ka = k + dk;
        let a = select(vec4<f32>(0.0), A4[(pa + min(ka, last) * p.a_sk) / 4u], ka < kn);
        let b0 = b_in(s, (pb + k * p.b_sk) / 4u);
        quad8(c, 0u, subgroupBroadcast(a, 0u), b0);
        quad8(c, 4u, subgroupBroadcast(a, 1u), b0);
        let b1 = b_in(s, (pb + min(k + 1u, last) * p.b_sk) / 4u);
        quad8(c, 0u, subgroupBroadcast(a, 2u), b1);
        quad8(c, 4u, subgroupBroadcast(a, 3u), b1);
        let b2 = b_in(s, (pb + min(k + 2u, last) * p.b_sk) / 4u);
        quad8(c, 0u, subgroupBroadcast(a, 4u), b2);
        quad8(c, 4u, subgroupBroadcast(a, 5u), b2);
        let b3 = b_in(s, (pb + min(k + 3u, last) * p.b_sk) / 4u);
        quad8(c, 0u, subgroupBroadcast(a, 6u), b3);
        quad8(c, 4u, subgroupBroadcast(a, 7u), b3);
    }
}

@compute @workgroup_size(64, 1, 1)
fn matmul_cpu_sg8(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = min(gid.x * 4u, p.n - 4u);
    let m0 = wid.y * 8u;
    let z = wid.z;
    if (subgroupAll(gid.x * 4u >= p.n)) { return; }
    let dk = lane / 2u;
    let pa = p.a_off + z * p.a_sb + min(m0 + 4u * (lane % 2u), last_quad());
    var c: array<vec4<f32>, 8>;
    seg8(0u, pa, b_seg(0u, z, n0), dk, &c);
    if (SEGS > 1u) { seg8(1u, pa + a_seg(1u), b_seg(1u, z, n0), dk, &c); }
    if (SEGS > 2u) { seg8(2u, pa + a_seg(2u), b_seg(2u, z, n0), dk, &c); }
    if (SEGS > 3u) { seg8(3u, pa + a_seg(3u), b_seg(3u, z, n0), dk, &c); }
    if (gid.x * 4u >= p.n) { return; }
    let cz = z * p.c_sb + n0;
    store_quad(cz, m0, c[0], c[1], c[2], c[3]);
    store_quad(cz, m0 + 4u, c[4], c[5], c[6], c[7]);
}

// ---------------------------------------------------------------------------------------
// matmul_cpu_sg32: `matmul_cpu_sg` with 32 rows and 8 columns (two column quads) per
// invocation, for M a multiple of 32: each step of k loads one row quad of the weights a
// lane (lane l: rows m0 + 4l … + 3) and two vec4s of B, for 256 FMAs. Fewer loads per FMA
// pay for the accumulators that no longer fit in registers (measured on lavapipe at the
// network's shapes from M = 32: 32 rows × 4 columns took 10–25 % less time per product
// than 16 × 4; 32 × 8 against 32 × 4, Mesa 25.0.7, 2 cores, min of 4 runs of 10 products:
// M 32 × K 256 over 128², 6.70 → 4.73 ms; M 32 × K 32 over 128², 1.12 → 1.04 ms). Where
// N/4 is odd the last invocation's second quad repeats the first and is not stored.
// Grid: (⌈N/8 / 64⌉, M/32, batch).

/// `matmul_cpu_sg32`'s loop over input `s`.
fn seg32(s: u32, pa0: u32, pb0: u32, pb20: u32, c: ptr<function, array<vec4<f32>, 64>>) {
    var pa = pa0;
    var pb = pb0;
    var pb2 = pb20;
    for (var k = 0u; k < k_seg(s); k++) {
        let a = A4[pa / 4u];
        let b = b_in(s, pb / 4u);
        let b2 = b_in(s, pb2 / 4u);
        quad32(c, 0u, subgroupBroadcast(a, 0u), b, b2);
        quad32(c, 4u, subgroupBroadcast(a, 1u), b, b2);
        quad32(c, 8u, subgroupBroadcast(a, 2u), b, b2);
        quad32(c, 12u, subgroupBroadcast(a, 3u), b, b2);
        quad32(c, 16u, subgroupBroadcast(a, 4u), b, b2);
        quad32(c, 20u, subgroupBroadcast(a, 5u), b, b2);
        quad32(c, 24u, subgroupBroadcast(a, 6u), b, b2);
        quad32(c, 28u, subgroupBroadcast(a, 7u), b, b2);
        pa += p.a_sk;
        pb += p.b_sk;
        pb2 += p.b_sk;
    }
}

@compute @workgroup_size(64, 1, 1)
fn matmul_cpu_sg32(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = min(gid.x * 8u, p.n - 4u);
    let n1 = min(gid.x * 8u + 4u, p.n - 4u);
    let m0 = wid.y * 32u;
    let z = wid.z;
    // A subgroup with no column inside N has nothing to compute: it skips the loop (the
    // broadcasts stay among lanes that all run it). Where N/8 is short of a workgroup
    // (the network's deepest levels below 256², any level at 32²) the clamped lanes
    // otherwise ran the whole loop for nothing.
    if (subgroupAll(gid.x * 8u >= p.n)) { return; }
    let pa = p.a_off + z * p.a_sb + m0 + 4u * lane;
    var c: array<vec4<f32>, 64>;
    seg32(0u, pa, b_seg(0u, z, n0), b_seg(0u, z, n1), &c);
    if (SEGS > 1u) { seg32(1u, pa + a_seg(1u), b_seg(1u, z, n0), b_seg(1u, z, n1), &c); }
    if (SEGS > 2u) { seg32(2u, pa + a_seg(2u), b_seg(2u, z, n0), b_seg(2u, z, n1), &c); }
    if (SEGS > 3u) { seg32(3u, pa + a_seg(3u), b_seg(3u, z, n0), b_seg(3u, z, n1), &c); }
    if (gid.x * 8u >= p.n) { return; }
    let cz = z * p.c_sb + n0;
    let cz2 = z * p.c_sb + n1;
    let second = gid.x * 8u + 4u < p.n;
    // The stores as a loop whose trip count the compiler cannot know, so that it stays a
    // loop: unrolled, the 32 lane-by-lane vec4 stores of the former 32 × 4 block (and
    // loads of C with ACC) took LLVM on lavapipe 1.0 s (3.4 s with ACC) to compile,
    // against 0.25 s (0.36 s) as a loop, which ran no slower.
    var acc = c;
    let rows = min(32u, p.m - m0);
    for (var q = 0u; q < rows; q += 4u) {
        store_quad(cz, m0 + q, acc[q], acc[q + 1u], acc[q + 2u], acc[q + 3u]);
        if (second) {
            store_quad(cz2, m0 + q, acc[q + 32u], acc[q + 33u], acc[q + 34u], acc[q + 35u]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// matmul_cpu_sg64: `matmul_cpu_sg32` with 64 rows and 8 columns (two column quads) per
// invocation, for M a multiple of 64 (or of 16 with a last block of 48 rows, whose last
// row quads repeat and are not stored): each lane loads two row quads of the weights per
// step of k (lane l: rows m0 + 4l … + 3 and m0 + 32 + 4l … + 3) and two vec4s of B, for
// 512 FMAs. On lavapipe a lane's load from a storage buffer is a guarded scalar access per
// component, while the accumulators that do not fit in registers spill to the stack, which
// is cheaper: so fewer loads per FMA pay again. Measured (Mesa 25.0.7, 2 cores, min of 3
// runs of 10 products): 8 columns against 4, M 64 × K 64 over 128², 3.01 → 2.69 ms;
// M 64 × K 256 over 64², 2.50 → 2.14 ms. Where N/4 is odd the last invocation's second
// quad repeats the first and is not stored.
// Grid: (⌈N/8 / 64⌉, ⌈M/64⌉, batch).

/// `matmul_cpu_sg64`'s loop over input `s`: its weights from A rows `pa0` and `pa20` on,
/// its two column quads from `pb0` and `pb20` on.
fn seg64(s: u32, pa0: u32, pa20: u32, pb0: u32, pb20: u32,
         c: ptr<function, array<vec4<f32>, 128>>) {
    var pa = pa0;
    var pa2 = pa20;
    var pb = pb0;
    var pb2 = pb20;
    for (var k = 0u; k < k_seg(s); k++) {
        let a = A4[pa / 4u];
        let a2 = A4[pa2 / 4u];
        let b = b_in(s, pb / 4u);
        let b2 = b_in(s, pb2 / 4u);
        quad64(c, 0u, subgroupBroadcast(a, 0u), b, b2);
        quad64(c, 4u, subgroupBroadcast(a, 1u), b, b2);
        quad64(c, 8u, subgroupBroadcast(a, 2u), b, b2);
        quad64(c, 12u, subgroupBroadcast(a, 3u), b, b2);
        quad64(c, 16u, subgroupBroadcast(a, 4u), b, b2);
        quad64(c, 20u, subgroupBroadcast(a, 5u), b, b2);
        quad64(c, 24u, subgroupBroadcast(a, 6u), b, b2);
        quad64(c, 28u, subgroupBroadcast(a, 7u), b, b2);
        quad64(c, 32u, subgroupBroadcast(a2, 0u), b, b2);
        quad64(c, 36u, subgroupBroadcast(a2, 1u), b, b2);
        quad64(c, 40u, subgroupBroadcast(a2, 2u), b, b2);
        quad64(c, 44u, subgroupBroadcast(a2, 3u), b, b2);
        quad64(c, 48u, subgroupBroadcast(a2, 4u), b, b2);
        quad64(c, 52u, subgroupBroadcast(a2, 5u), b, b2);
        quad64(c, 56u, subgroupBroadcast(a2, 6u), b, b2);
        quad64(c, 60u, subgroupBroadcast(a2, 7u), b, b2);
        pa += p.a_sk;
        pa2 += p.a_sk;
        pb += p.b_sk;
        pb2 += p.b_sk;
    }
}

@compute @workgroup_size(64, 1, 1)
fn matmul_cpu_sg64(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = min(gid.x * 8u, p.n - 4u);
    let n1 = min(gid.x * 8u + 4u, p.n - 4u);
    let m0 = wid.y * 64u;
    let z = wid.z;
    if (subgroupAll(gid.x * 8u >= p.n)) { return; }
    // Row quads past M (the last block of M = 48) repeat the last and are not stored.
    let pa = p.a_off + z * p.a_sb + min(m0 + 4u * lane, p.m - 4u);
    let pa2 = p.a_off + z * p.a_sb + min(m0 + 32u + 4u * lane, p.m - 4u);
    var c: array<vec4<f32>, 128>;
    seg64(0u, pa, pa2, b_seg(0u, z, n0), b_seg(0u, z, n1), &c);
    if (SEGS > 1u) {
        seg64(1u, pa + a_seg(1u), pa2 + a_seg(1u), b_seg(1u, z, n0), b_seg(1u, z, n1), &c);
    }
    if (SEGS > 2u) {
        seg64(2u, pa + a_seg(2u), pa2 + a_seg(2u), b_seg(2u, z, n0), b_seg(2u, z, n1), &c);
    }
    if (SEGS > 3u) {
        seg64(3u, pa + a_seg(3u), pa2 + a_seg(3u), b_seg(3u, z, n0), b_seg(3u, z, n1), &c);
    }
    if (gid.x * 8u >= p.n) { return; }
    let cz = z * p.c_sb + n0;
    let cz2 = z * p.c_sb + n1;
    let second = gid.x * 8u + 4u < p.n;
    // The stores as a loop, as in sg32.
    var acc = c;
    let rows = min(64u, p.m - m0);
    for (var q = 0u; q < rows; q += 4u) {
        store_quad(cz, m0 + q, acc[q], acc[q + 1u], acc[q + 2u], acc[q + 3u]);
        if (second) {
            store_quad(cz2, m0 + q, acc[q + 64u], acc[q + 65u], acc[q + 66u], acc[q + 67u]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// matmul_nt_cpu_sg: `matmul_nt_cpu` (C = Σ_k A[b, m, k]·B[b, n, k], k contiguous in both:
// the weight gradients dY·Xᵀ) with the rows of A shared across the subgroup. A subgroup
// computes a block of 16 (or NT_R) rows × 8·NT_C columns of C over one chunk of K, four steps of k
// at a time: lane l loads the vec4s of rows m0 + l and m0 + 8 + l (rows past M repeat the
// last and are not stored), and `subgroupBroadcast` hands each row to all lanes, whose
// NT_C columns (lane l: n0 + NT_C·l …) are their own. Per step of four: 2 + NT_C vector
// loads per lane for 16·NT_C dot products. The workgroup's 8 subgroups take 8 blocks
// (row-block-major), so the lanes that share rows are one subgroup however the device
// forms them. NT_C = 2 where N is not a multiple of 32 (the 16 columns of the network's
// narrowest maps: with 4 columns half the lanes would repeat the last), else 4.
// Measured on lavapipe (2 cores, Mesa 25.0.7) against the former 8 rows × 4 columns per
// lane, min of 5: 16 × 16 over K = 65536, 3.1 → 1.4 ms; 16 × 48, 7.1 → 4.3 ms; 48 × 48,
// 18.3 → 12.6 ms; 96 × 96 over 16384, 13.4 → 10.0 ms; the rest within the noise. The sums
// run in the same order as before (one dot product per step of four). K and the strides
// are multiples of 4 (the caller checks); M and N are any (rows and columns past the end
// repeat the last and are not stored), so the thin weight gradients of a layer with one
// input or one output channel take it too. Where M is whole blocks of 32 a subgroup takes
// 32 rows (NT_R; lane l also loads rows m0 + 16 + l and m0 + 24 + l): 4 + NT_C loads for
// 32·NT_C dot products. Its share of a training step at 256², F 16 (3 alternated
// profiles, 2 cores, Mesa 25.0.7) went from 16.8–17.8 % to 15.8–16.1 %; the sums are the
// same, in the same order.
// Grid: (⌈⌈M/NT_R⌉·⌈N/(8·NT_C)⌉ / 8⌉, 1, batch · chunks), `splits` = chunks.

/// Columns of C per lane of `matmul_nt_cpu_sg`: 2 or 4.
override NT_C: u32 = 4u;
/// Rows of C per subgroup of `matmul_nt_cpu_sg`: 16 or 32 (lane l also loads rows
/// m0 + 16 + l and m0 + 24 + l).
override NT_R: u32 = 16u;

@compute @workgroup_size(64, 1, 1)
fn matmul_nt_cpu_sg(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(subgroup_id) sg: u32,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let cols = 8u * NT_C;
    let col_blocks = (p.n + cols - 1u) / cols;
    let block = wid.x * 8u + sg;
    let m0 = (block / col_blocks) * NT_R;
    // The same for the whole subgroup, so the broadcasts below stay among live lanes.
    if (m0 >= p.m) { return; }
    let n0 = (block % col_blocks) * cols + lane * NT_C;
    let z = wid.z;
    let batch = z / p.splits;
    let k_begin = (z % p.splits) * p.kchunk;
    let k_end = min(p.k, k_begin + p.kchunk);
    let ab = p.a_off + batch * p.a_sb;
    let lm = p.m - 1u;
    let pa = (ab + min(m0 + lane, lm) * p.a_sm) / 4u;
    let pa8 = (ab + min(m0 + 8u + lane, lm) * p.a_sm) / 4u;
    let pa16 = (ab + min(m0 + 16u + lane, lm) * p.a_sm) / 4u;
    let pa24 = (ab + min(m0 + 24u + lane, lm) * p.a_sm) / 4u;
    // Columns past N repeat the last (N need not be a multiple of 4 here).
    let bb = batch * p.b_sb;
    let last = p.n - 1u;
    let pb0 = (bb + min(n0, last) * p.b_sn) / 4u;
    let pb1 = (bb + min(n0 + 1u, last) * p.b_sn) / 4u;
    let pb2 = (bb + min(n0 + 2u, last) * p.b_sn) / 4u;
    let pb3 = (bb + min(n0 + 3u, last) * p.b_sn) / 4u;
    // More accumulators than the rows use, read back by a loop of run-time length: LLVM on
    // lavapipe then keeps them as one array in memory, updated in place, instead of as
    // separate values it spills (arrays of up to 32 vec4s, or read with constant indices
    // only, are split). A probe of FMAs alone ran 3× faster so; here the weight gradients
    // of 32-row blocks took 5–8 % less time (GPU time, min of 48 runs each: 64 × 64 over
    // 128², 2.52 → 2.35 ms; 128 × 128 over 64², 2.51 → 2.30 ms), 16-row ones 2 % more.
    var r: array<vec4<f32>, 40>;
    for (var q = k_begin / 4u; q < k_end / 4u; q++) {
        let b0 = B4[pb0 + q];
        let b1 = B4[pb1 + q];
        var b2 = vec4<f32>(0.0);
        var b3 = vec4<f32>(0.0);
        if (NT_C == 4u) { b2 = B4[pb2 + q]; b3 = B4[pb3 + q]; }
        let a = A4[pa + q];
        let a8 = A4[pa8 + q];
        r[0] += dots_c(subgroupBroadcast(a, 0u), b0, b1, b2, b3);
        r[8] += dots_c(subgroupBroadcast(a8, 0u), b0, b1, b2, b3);
        r[1] += dots_c(subgroupBroadcast(a, 1u), b0, b1, b2, b3);
        r[9] += dots_c(subgroupBroadcast(a8, 1u), b0, b1, b2, b3);
        r[2] += dots_c(subgroupBroadcast(a, 2u), b0, b1, b2, b3);
        r[10] += dots_c(subgroupBroadcast(a8, 2u), b0, b1, b2, b3);
        r[3] += dots_c(subgroupBroadcast(a, 3u), b0, b1, b2, b3);
        r[11] += dots_c(subgroupBroadcast(a8, 3u), b0, b1, b2, b3);
        r[4] += dots_c(subgroupBroadcast(a, 4u), b0, b1, b2, b3);
        r[12] += dots_c(subgroupBroadcast(a8, 4u), b0, b1, b2, b3);
        r[5] += dots_c(subgroupBroadcast(a, 5u), b0, b1, b2, b3);
        r[13] += dots_c(subgroupBroadcast(a8, 5u), b0, b1, b2, b3);
        r[6] += dots_c(subgroupBroadcast(a, 6u), b0, b1, b2, b3);
        r[14] += dots_c(subgroupBroadcast(a8, 6u), b0, b1, b2, b3);
        r[7] += dots_c(subgroupBroadcast(a, 7u), b0, b1, b2, b3);
        r[15] += dots_c(subgroupBroadcast(a8, 7u), b0, b1, b2, b3);
        if (NT_R == 32u) {
            let a16 = A4[pa16 + q];
            let a24 = A4[pa24 + q];
            r[16] += dots_c(subgroupBroadcast(a16, 0u), b0, b1, b2, b3);
            r[24] += dots_c(subgroupBroadcast(a24, 0u), b0, b1, b2, b3);
            r[17] += dots_c(subgroupBroadcast(a16, 1u), b0, b1, b2, b3);
            r[25] += dots_c(subgroupBroadcast(a24, 1u), b0, b1, b2, b3);
            r[18] += dots_c(subgroupBroadcast(a16, 2u), b0, b1, b2, b3);
            r[26] += dots_c(subgroupBroadcast(a24, 2u), b0, b1, b2, b3);
            r[19] += dots_c(subgroupBroadcast(a16, 3u), b0, b1, b2, b3);
            r[27] += dots_c(subgroupBroadcast(a24, 3u), b0, b1, b2, b3);
            r[20] += dots_c(subgroupBroadcast(a16, 4u), b0, b1, b2, b3);
            r[28] += dots_c(subgroupBroadcast(a24, 4u), b0, b1, b2, b3);
            r[21] += dots_c(subgroupBroadcast(a16, 5u), b0, b1, b2, b3);
            r[29] += dots_c(subgroupBroadcast(a24, 5u), b0, b1, b2, b3);
            r[22] += dots_c(subgroupBroadcast(a16, 6u), b0, b1, b2, b3);
            r[30] += dots_c(subgroupBroadcast(a24, 6u), b0, b1, b2, b3);
            r[23] += dots_c(subgroupBroadcast(a16, 7u), b0, b1, b2, b3);
            r[31] += dots_c(subgroupBroadcast(a24, 7u), b0, b1, b2, b3);
        }
    }
    if (n0 >= p.n) { return; }
    let row = z * p.c_sb + m0 * p.c_sm + n0;
    let rows = min(NT_R, p.m - m0);
    for (var i = 0u; i < rows; i++) {
        let v = r[i];
        let vals = array<f32, 4>(v.x, v.y, v.z, v.w);
        for (var j = 0u; j < NT_C; j++) {
            if (n0 + j < p.n) { C1[row + i * p.c_sm + j] = vals[j]; }
        }
    }
}

/// One row of A (a, four steps of k) against NT_C columns of B (the first NT_C of the
/// result; the rest 0).
fn dots_c(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    if (NT_C == 4u) { return dots(a, b0, b1, b2, b3); }
    return vec4<f32>(dot(a, b0), dot(a, b1), 0.0, 0.0);
}

/// One row of A (a, four steps of k) against four columns of B.
fn dots(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
}

// C as scalars: a row of C need not start on a vec4 when N is not a multiple of 4.
@group(0) @binding(3) var<storage, read_write> C1: array<f32>;

// Columns n0..n0+3 of row m, those inside C.
fn store_row(i: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    let vals = array<f32, 4>(v.x, v.y, v.z, v.w);
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) { C1[i + j] = vals[j]; }
    }
}

// ---------------------------------------------------------------------------------------
// matmul_nt_cpu_ks: `matmul_nt_cpu_sg`'s product for matrices too narrow to give its lanes
// a column quad each (N ≤ 8: the weight gradients of layers with few input channels,
// whose K, the pixels, is long). A workgroup is one subgroup of 8 lanes computing one
// tile of 8 rows × 4 columns; the lanes split the chunk's k instead (lane l takes every
// 8th vec4 of k from the l-th), and `subgroupAdd` sums their tiles. `matmul_nt_cpu_sg`
// there keeps one lane of 8 busy where N = 4 (the others repeat the last column quad)
// and one subgroup of 8 where M ≤ 8. Rows past M and columns past N repeat the last and
// are not stored. K, kchunk and the strides are multiples of 4 (the caller checks).
// Grid: (⌈N/4⌉, ⌈M/8⌉, batch · chunks), `splits` = chunks.

@compute @workgroup_size(8, 1, 1)
fn matmul_nt_cpu_ks(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lane: u32) {
    let m0 = wid.y * 8u;
    let n0 = wid.x * 4u;
    let z = wid.z;
    let batch = z / p.splits;
    let k_begin = (z % p.splits) * p.kchunk;
    let k_end = min(p.k, k_begin + p.kchunk);
    let ab = p.a_off + batch * p.a_sb;
    let lm = p.m - 1u;
    let pa0 = (ab + min(m0, lm) * p.a_sm) / 4u;
    let pa1 = (ab + min(m0 + 1u, lm) * p.a_sm) / 4u;
    let pa2 = (ab + min(m0 + 2u, lm) * p.a_sm) / 4u;
    let pa3 = (ab + min(m0 + 3u, lm) * p.a_sm) / 4u;
    let pa4 = (ab + min(m0 + 4u, lm) * p.a_sm) / 4u;
    let pa5 = (ab + min(m0 + 5u, lm) * p.a_sm) / 4u;
    let pa6 = (ab + min(m0 + 6u, lm) * p.a_sm) / 4u;
    let pa7 = (ab + min(m0 + 7u, lm) * p.a_sm) / 4u;
    let bb = batch * p.b_sb;
    let ln = p.n - 1u;
    let pb0 = (bb + min(n0, ln) * p.b_sn) / 4u;
    let pb1 = (bb + min(n0 + 1u, ln) * p.b_sn) / 4u;
    let pb2 = (bb + min(n0 + 2u, ln) * p.b_sn) / 4u;
    let pb3 = (bb + min(n0 + 3u, ln) * p.b_sn) / 4u;
    var r0 = vec4<f32>(0.0); var r1 = vec4<f32>(0.0);
    var r2 = vec4<f32>(0.0); var r3 = vec4<f32>(0.0);
    var r4 = vec4<f32>(0.0); var r5 = vec4<f32>(0.0);
    var r6 = vec4<f32>(0.0); var r7 = vec4<f32>(0.0);
    for (var q = k_begin / 4u + lane; q < k_end / 4u; q += 8u) {
        let b0 = B4[pb0 + q]; let b1 = B4[pb1 + q];
        let b2 = B4[pb2 + q]; let b3 = B4[pb3 + q];
        r0 += dots(A4[pa0 + q], b0, b1, b2, b3);
        r1 += dots(A4[pa1 + q], b0, b1, b2, b3);
        r2 += dots(A4[pa2 + q], b0, b1, b2, b3);
        r3 += dots(A4[pa3 + q], b0, b1, b2, b3);
        r4 += dots(A4[pa4 + q], b0, b1, b2, b3);
        r5 += dots(A4[pa5 + q], b0, b1, b2, b3);
        r6 += dots(A4[pa6 + q], b0, b1, b2, b3);
        r7 += dots(A4[pa7 + q], b0, b1, b2, b3);
    }
    r0 = subgroupAdd(r0); r1 = subgroupAdd(r1); r2 = subgroupAdd(r2); r3 = subgroupAdd(r3);
    r4 = subgroupAdd(r4); r5 = subgroupAdd(r5); r6 = subgroupAdd(r6); r7 = subgroupAdd(r7);
    if (lane != 0u) { return; }
    let row = z * p.c_sb + m0 * p.c_sm + n0;
    store_row(row, m0, n0, r0);
    store_row(row + p.c_sm, m0 + 1u, n0, r1);
    store_row(row + 2u * p.c_sm, m0 + 2u, n0, r2);
    store_row(row + 3u * p.c_sm, m0 + 3u, n0, r3);
    store_row(row + 4u * p.c_sm, m0 + 4u, n0, r4);
    store_row(row + 5u * p.c_sm, m0 + 5u, n0, r5);
    store_row(row + 6u * p.c_sm, m0 + 6u, n0, r6);
    store_row(row + 7u * p.c_sm, m0 + 7u, n0, r7);
}
