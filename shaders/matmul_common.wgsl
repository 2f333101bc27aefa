// What the products of shaders/matmul.wgsl and shaders/matmul_sg.wgsl share: their
// parameter block (see matmul.wgsl's header), the vec4 views of A, B and C, the bias, and
// the epilogue of the CPU-shaped products. The runtime puts this file before each of the
// two (`Shader::source`); WGSL has no include.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    kchunk: u32,
    splits: u32,
    a_off: u32,    // where A starts in its binding (a column block of a weight matrix)
    a_sb: u32, a_sm: u32, a_sk: u32,
    b_sb: u32, b_sk: u32, b_sn: u32,
    c_sb: u32, c_sm: u32,
    flags: u32,    // what the store adds and applies: BIAS | RELU
    k1: u32, k2: u32, k3: u32,  // steps of k of the inputs after B (matmul_sg.wgsl's SEGS)
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> C4: array<vec4<f32>>;

// The bits of `p.flags`: immediates, not override constants, so that both settings run
// one pipeline. On lavapipe, where LLVM compiles a pipeline on its first dispatch (about a
// second for the unrolled products), that halves what the first inference compiles.
/// Add bias[m] to row m.
const BIAS: u32 = 1u;
/// Store max(0, ·): the ReLU after a batch norm folded into the product (inference).
const RELU: u32 = 2u;

/// Add the product to what C holds (`p.flags`, for pipelines with ACC = 2).
const ACCUMULATE: u32 = 4u;

/// Add the product to what C holds instead of overwriting it (a 1×1 convolution over a
/// concatenation taken input by input, `ops::conv1x1_cat`): 0 never, 1 always, 2 where
/// `p.flags` has ACCUMULATE. An override constant: as a flag, the loads of C it adds to
/// every pipeline made the products measurably slower on lavapipe (13.5 → 9.6 GFLOP/s for
/// `matmul_cpu_sg` in the network at 256²); 2 is for small models, whose first inference
/// is mostly compilation (`Gpu::set_few_pipelines`): one pipeline instead of two.
override ACC: u32 = 0u;

/// Whether the store adds to C (see ACC).
fn accumulates() -> bool {
    return ACC == 1u || (ACC == 2u && (p.flags & ACCUMULATE) != 0u);
}

fn acc4(i: u32) -> vec4<f32> {
    if (accumulates()) { return C4[i]; }
    return vec4<f32>(0.0);
}

fn act4(v: vec4<f32>) -> vec4<f32> {
    if ((p.flags & RELU) != 0u) { return max(v, vec4<f32>(0.0)); }
    return v;
}

// The CPU-shaped products read A (the weights, K×M) as row quads: where M is not a multiple
// of 4 each row of A must hold M rounded up to a quad (`ops::conv1x1`'s transpose pads its
// rows with zeros; a block of a wider matrix has the next block's columns there). The rows
// past M are computed and not stored.
/// The first row of the last row quad of A (rows past it are clamped to it).
fn last_quad() -> u32 {
    return ((p.m + 3u) & ~3u) - 4u;
}

// Rows m..m+3 of one column quad (m % 4 == 0), those inside M.
fn store_quad(cz: u32, m: u32, r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>) {
    if (m >= p.m) { return; }
    let rows = p.m - m;
    var bv = vec4<f32>(0.0);
    if ((p.flags & BIAS) != 0u) {
        let lm = p.m - 1u;
        bv = vec4<f32>(bias[m], bias[min(m + 1u, lm)], bias[min(m + 2u, lm)], bias[min(m + 3u, lm)]);
    }
    let row = cz + m * p.c_sm;
    C4[row / 4u] = act4(acc4(row / 4u) + r0 + vec4<f32>(bv.x));
    if (rows > 1u) { C4[(row + p.c_sm) / 4u] = act4(acc4((row + p.c_sm) / 4u) + r1 + vec4<f32>(bv.y)); }
    if (rows > 2u) { C4[(row + 2u * p.c_sm) / 4u] = act4(acc4((row + 2u * p.c_sm) / 4u) + r2 + vec4<f32>(bv.z)); }
    if (rows > 3u) { C4[(row + 3u * p.c_sm) / 4u] = act4(acc4((row + 3u * p.c_sm) / 4u) + r3 + vec4<f32>(bv.w)); }
}
